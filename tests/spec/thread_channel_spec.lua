-- Channels shared across threads: a channel passed to a job (as an
-- argument, an upvalue, inside a message) is the same queue; many producers
-- and consumers on both sides; bounded channels apply back-pressure.
local crt = require "crt"
local th = require "tests.spec.thread_helper"

describe("channels across threads #tsan", function()
  after_each(th.clean)

  it("is the same queue when passed as an argument", function()
    local ch = crt.channel()
    crt.thread.run(function(c) for i = 1, 3 do c:send(i) end c:close() end, ch):await()
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.are.same({ 1, 2, 3 }, got)
  end)

  it("is the same queue when captured as an upvalue", function()
    local ch = crt.channel()
    local t = crt.thread.run(function() return ch:recv() + 1 end)
    ch:send(41)
    assert.are.equal(42, t:await())
  end)

  it("is the same queue when it travels inside a message", function()
    local outer = crt.channel()
    local reply = crt.channel(1)
    local t = crt.thread.run(function(o)
      local msg = o:recv()
      msg.reply:send(msg.x * 2)
      return "ok"
    end, outer)
    outer:send({ x = 21, reply = reply })
    assert.are.equal(42, reply:recv())
    assert.are.equal("ok", t:await())
    -- And back: a channel created in a worker reaches the main task.
    local made = crt.thread.run(function()
      local c = crt.channel()
      c:send("from the worker")
      return c
    end):await()
    assert.are.equal("from the worker", made:recv())
  end)

  it("keeps values in order from one producer thread", function()
    local ch = crt.channel(16)
    local t = crt.thread.run(function(c)
      for i = 1, 10000 do c:send({ i = i, s = "hello" }) end
      c:close()
    end, ch)
    local n = 0
    for v in ch:iter() do
      n = n + 1
      assert.are.equal(n, v.i)
    end
    assert.are.equal(10000, n)
    t:await()
  end)

  it("carries many producers and consumers on both sides", function()
    local p = crt.thread.pool { size = 4 }
    local work, results = crt.channel(8), crt.channel(8)
    local N, PRODUCERS = 2000, 4
    local tasks = {}
    -- Producers: two threads and two tasks.
    for k = 1, PRODUCERS do
      local function produce(w, first, step, n)
        for i = first, n, step do w:send(i) end
      end
      if k <= 2 then
        tasks[#tasks + 1] = p:run(produce, work, k, PRODUCERS, N)
      else
        tasks[#tasks + 1] = crt.spawn(produce, work, k, PRODUCERS, N)
      end
    end
    -- Consumers: two threads and two tasks, each squares what it gets.
    local consumers = {}
    local function consume(w, r)
      local c = 0
      for v in w:iter() do
        r:send(v * v)
        c = c + 1
      end
      return c
    end
    for k = 1, 4 do
      if k <= 2 then
        consumers[k] = p:run(consume, work, results)
      else
        consumers[k] = crt.spawn(consume, work, results)
      end
    end
    local closer = crt.spawn(function()
      for _, t in ipairs(tasks) do t:await() end
      work:close()
      local c = 0
      for _, t in ipairs(consumers) do c = c + t:await() end
      results:close()
      return c
    end)
    local sum, count = 0, 0
    for v in results:iter() do
      sum = sum + v
      count = count + 1
    end
    assert.are.equal(N, count)
    assert.are.equal(N, closer:await())
    assert.are.equal(N * (N + 1) * (2 * N + 1) // 6, sum)
    p:close()
  end)

  it("applies back-pressure across threads with a bounded channel", function()
    local ch = crt.channel(2)
    local started = crt.channel()
    local t = crt.thread.run(function(c, s)
      s:send(true)
      for i = 1, 5 do c:send(i) end
      return "sent all"
    end, ch, started)
    started:recv()
    th.wait_until(function() return #ch == 2 end, "the bounded channel to fill")
    assert.are.equal("running", t:status())
    local got = {}
    for _ = 1, 5 do got[#got + 1] = ch:recv() end
    assert.are.same({ 1, 2, 3, 4, 5 }, got)
    assert.are.equal("sent all", t:await())
  end)

  it("select in a worker waits on several channels", function()
    local a, b = crt.channel(), crt.channel()
    local t = crt.thread.run(function(x, y)
      local i, v = crt.select { { x, "recv" }, { y, "recv" } }
      return i, v
    end, a, b)
    b:send("bee")
    assert.are.same({ 2, "bee" }, { t:await() })
  end)
end)
