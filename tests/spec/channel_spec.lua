-- Channels between tasks: rendezvous, buffered and unbounded channels,
-- send/recv/try_send/try_recv/close/iter/#, crt.select, and failure paths.
local crt = require "crt"
local helper = require "tests.spec.helper"

describe("crt.channel #tsan", function()
  after_each(helper.assert_clean)

  it("rendezvous: send waits for a receiver", function()
    local ch = crt.channel(0)
    local log = {}
    local sender = crt.spawn(function()
      log[#log + 1] = "send start"
      ch:send("v")
      log[#log + 1] = "send done"
    end)
    crt.yield()
    assert.are.same({ "send start" }, log)
    assert.are.equal(0, #ch)
    assert.are.equal("v", ch:recv())
    sender:await()
    assert.are.same({ "send start", "send done" }, log)
  end)

  it("buffered: send waits only when full", function()
    local ch = crt.channel(2)
    assert.is_true(ch:send(1))
    assert.is_true(ch:send(2))
    assert.are.equal(2, #ch)
    assert.is_false(ch:try_send(3))
    local t = crt.spawn(function() ch:send(3) return "sent" end)
    crt.yield()
    assert.are.equal("running", t:status())
    assert.are.equal(1, ch:recv())
    assert.are.equal("sent", t:await())
    assert.are.equal(2, ch:recv())
    assert.are.equal(3, ch:recv())
  end)

  it("unbounded: never waits to send", function()
    local ch = crt.channel()
    for i = 1, 10000 do ch:send(i) end
    assert.are.equal(10000, #ch)
    for i = 1, 10000 do assert.are.equal(i, ch:recv()) end
  end)

  it("passes tables by reference between tasks of one state", function()
    local ch = crt.channel(1)
    local t = { 1 }
    ch:send(t)
    assert.are.equal(t, ch:recv())
    local r = crt.channel(0)
    crt.spawn(function() r:send(t) end)
    assert.are.equal(t, r:recv())
  end)

  it("keeps FIFO order with many senders and receivers", function()
    local ch = crt.channel(3)
    local got = {}
    local producers, consumers = {}, {}
    for p = 1, 4 do
      producers[p] = crt.spawn(function()
        for i = 1, 100 do ch:send(p * 1000 + i) end
      end)
    end
    for c = 1, 3 do
      got[c] = {}
      consumers[c] = crt.spawn(function()
        for v in ch:iter() do table.insert(got[c], v) end
      end)
    end
    for p = 1, 4 do producers[p]:await() end
    ch:close()
    for c = 1, 3 do consumers[c]:await() end
    assert.are.equal(400, #got[1] + #got[2] + #got[3])
    -- each consumer sees each producer's values in the order they were sent
    for c = 1, 3 do
      local last = {}
      for _, v in ipairs(got[c]) do
        local p, i = v // 1000, v % 1000
        assert.is_true(i > (last[p] or 0))
        last[p] = i
      end
    end
  end)

  it("ping-pongs through two rendezvous channels", function()
    local a, b = crt.channel(0), crt.channel(0)
    local pong = crt.spawn(function()
      for v in a:iter() do b:send(v + 1) end
    end)
    local x = 0
    for _ = 1, 1000 do
      a:send(x)
      x = b:recv()
    end
    a:close()
    pong:await()
    assert.are.equal(1000, x)
  end)

  it("try_recv and try_send never wait", function()
    local ch = crt.channel(1)
    assert.is_nil(ch:try_recv())
    assert.is_true(ch:try_send("a"))
    assert.is_false(ch:try_send("b"))
    assert.are.equal("a", ch:try_recv())
    local r = crt.channel(0)
    assert.is_false(r:try_send(1)) -- nobody waits to receive
    local t = crt.spawn(function() return r:recv() end)
    crt.yield()
    assert.is_true(r:try_send(5)) -- a parked receiver takes it
    assert.are.equal(5, t:await())
  end)

  it("close: recv drains, then returns nil; send raises", function()
    local ch = crt.channel(2)
    ch:send(1)
    ch:close()
    ch:close() -- closing twice is harmless
    assert.is_true(ch:closed())
    assert.are.equal(1, ch:recv())
    assert.is_nil(ch:recv())
    assert.is_nil(ch:try_recv())
    assert.has_error(function() ch:send(2) end, "channel:send: channel is closed")
    assert.has_error(function() ch:try_send(2) end, "channel:try_send: channel is closed")
  end)

  it("close wakes parked receivers with nil and parked senders with an error", function()
    local ch, out = crt.channel(0), crt.channel(0)
    local r = crt.spawn(function() return ch:recv() end)
    local s = crt.spawn(function() return pcall(out.send, out, 1) end)
    crt.yield()
    ch:close()
    out:close()
    assert.is_nil(r:await())
    local ok, err = s:await()
    assert.is_false(ok)
    assert.matches("channel:send: channel is closed", err)
  end)

  it("iter stops when closed and drained", function()
    local ch = crt.channel()
    for i = 1, 3 do ch:send(i) end
    ch:close()
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.are.same({ 1, 2, 3 }, got)
  end)

  it("carries false, numbers, strings and tables, and refuses nil", function()
    local ch = crt.channel()
    for _, v in ipairs { false, 0, -0.5, "", "x\0y", {} } do
      ch:send(v)
      assert.are.equal(v, ch:recv())
    end
    assert.has_error(function() ch:send(nil) end,
      "channel:send: bad argument #1 (value expected, got nil)")
    assert.has_error(function() ch:send() end)
    assert.has_error(function() ch:try_send(nil) end,
      "channel:try_send: bad argument #1 (value expected, got nil)")
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.channel(-1) end,
      "crt.channel: bad argument #1 (capacity must be >= 0)")
    assert.has_error(function() crt.channel("x") end,
      "crt.channel: bad argument #1 (integer expected, got string)")
    assert.has_error(function() crt.channel(1.5) end,
      "crt.channel: bad argument #1 (integer expected, got number)")
    local ch = crt.channel()
    assert.has_error(function() ch.recv(nil) end,
      "channel:recv: bad argument #1 (channel expected, got nil)")
  end)

  it("reports its statistics", function()
    local ch = crt.channel(4)
    ch:send(1)
    ch:send(2)
    ch:recv()
    local s = ch:stats()
    assert.are.same({ queued = 1, capacity = 4, closed = false, shared = false,
      sent = 2, received = 1 }, s)
    assert.are.equal(-1, crt.channel():stats().capacity)
  end)

  it("a cancelled sender's value is never delivered", function()
    local ch = crt.channel(0)
    local s = crt.spawn(function() ch:send("lost") end)
    crt.yield()
    s:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(s.await, s)))
    assert.is_nil(ch:try_recv())
  end)

  it("a value handed to a woken receiver is not lost when it is cancelled", function()
    local ch = crt.channel(0)
    local got
    local r = crt.spawn(function()
      got = ch:recv()
      local ok = pcall(crt.sleep, 100) -- the cancel is delivered here
      return ok
    end)
    crt.yield()
    ch:send("kept") -- r is woken with the value...
    r:cancel() -- ...and cancelled before it runs
    assert.is_false(r:await())
    assert.are.equal("kept", got)
  end)

  it("waiting outside a task is an error in module mode only", function()
    -- Inside the crt binary every call here is in a task; the module-mode
    -- behaviour is checked in module_spec.lua.
    assert.is_not_nil(crt.channel())
  end)
end)

describe("crt.select #tsan", function()
  after_each(helper.assert_clean)

  it("returns the first ready case, in case order", function()
    local a, b = crt.channel(1), crt.channel(1)
    a:send("a")
    b:send("b")
    assert.are.same({ 1, "a" }, { crt.select { { a, "recv" }, { b, "recv" } } })
    assert.are.same({ 2, "b" }, { crt.select { { a, "recv" }, { b, "recv" } } })
  end)

  it("waits for the first case to become ready", function()
    local a, b = crt.channel(), crt.channel()
    crt.spawn(function() crt.sleep(0.001) b:send("late") end)
    assert.are.same({ 2, "late" }, { crt.select { { a, "recv" }, { b, "recv" } } })
    -- the waiter on a was removed: a value sent to a now is queued
    a:send(1)
    assert.are.equal(1, #a)
    a:recv()
  end)

  it("send cases complete when a receiver comes", function()
    local a = crt.channel(0)
    local r = crt.spawn(function() crt.sleep(0.001) return a:recv() end)
    assert.are.same({ 1, nil }, { crt.select { { a, "send", "hello" } } })
    assert.are.equal("hello", r:await())
  end)

  it("times out", function()
    local a = crt.channel()
    local t0 = crt.now()
    assert.are.same({ nil, "timeout" }, { crt.select { { a, "recv" }, timeout = 0.01 } })
    assert.is_true(crt.now() - t0 >= 0.01)
    assert.are.same({ nil, "timeout" }, { crt.select { { a, "recv" }, timeout = 0 } })
    a:send(1)
    assert.are.equal(1, a:recv())
  end)

  it("a closed, drained channel is ready with nil", function()
    local a, b = crt.channel(), crt.channel()
    a:close()
    assert.are.same({ 1, nil }, { crt.select { { a, "recv" }, { b, "recv" } } })
    local c = crt.channel()
    local t = crt.spawn(function() return crt.select { { b, "recv" }, { c, "recv" } } end)
    crt.yield()
    c:close()
    assert.are.same({ 2, nil }, { t:await() })
  end)

  it("a send case on a closed channel raises", function()
    local a = crt.channel(1)
    a:close()
    assert.has_error(function() crt.select { { a, "send", 1 } } end,
      "crt.select: channel of case #1 is closed")
  end)

  it("can be cancelled, and then leaves no waiter behind", function()
    local a, b = crt.channel(), crt.channel(0)
    local t = crt.spawn(function() return crt.select { { a, "recv" }, { b, "send", 1 } } end)
    crt.yield()
    t:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
    assert.is_true(a:try_send(9))
    assert.are.equal(9, a:recv())
    assert.is_nil(b:try_recv())
  end)

  it("with only a timeout, sleeps", function()
    local t0 = crt.now()
    assert.are.same({ nil, "timeout" }, { crt.select { timeout = 0.005 } })
    assert.is_true(crt.now() - t0 >= 0.005)
  end)

  it("checks its arguments", function()
    local a = crt.channel()
    assert.has_error(function() crt.select() end,
      "crt.select: bad argument #1 (table expected, got no value)")
    assert.has_error(function() crt.select {} end,
      "crt.select: bad argument #1 (no cases and no timeout)")
    assert.has_error(function() crt.select { 1 } end,
      "crt.select: bad case #1 (table expected, got number)")
    assert.has_error(function() crt.select { { 1, "recv" } } end,
      "crt.select: bad case #1 (channel expected, got number)")
    assert.has_error(function() crt.select { { a, "take" } } end,
      "crt.select: bad case #1 (\"recv\" or \"send\" expected)")
    assert.has_error(function() crt.select { { a, "send" } } end,
      "crt.select: bad case #1 (value to send expected, got nil)")
    assert.has_error(function() crt.select { { a, "recv" }, timeout = "x" } end,
      "crt.select: bad argument #1 (timeout must be a number)")
  end)
end)
