-- The thread pool: crt.thread.run/map/imap, crt.thread.pool with init, the
-- values that cross (results, upvalues, errors with the worker's traceback,
-- unsendable values named), pool life (size checks, close), crt.thread.id,
-- and worker states that persist between jobs.
-- Globals set inside jobs live in the worker states:
-- luacheck: globals INIT_COUNT LOADS
local crt = require "crt"
local th = require "tests.spec.thread_helper"

describe("crt.thread.run #tsan", function()
  after_each(th.clean)

  it("returns a task whose results are the function's", function()
    local t = crt.thread.run(function(a, b) return a + b, a * b, "s" end, 6, 7)
    assert.are.equal("crt.task", getmetatable(t).__name)
    local s, p, str = t:await()
    assert.are.same({ 13, 42, "s" }, { s, p, str })
    assert.are.equal("done", t:status())
  end)

  it("copies arguments and results deeply (tables, cycles, nil holes)", function()
    local arg = { a = { b = { 1, 2, 3 } }, s = "x\0y" }
    arg.self = arg
    local r = crt.thread.run(function(t)
      t.a.b[4] = 4
      return t, t.self == t, nil, 5
    end, arg):await()
    assert.are.same({ 1, 2, 3, 4 }, r.a.b)
    assert.are.equal(r, r.self)
    assert.are.same({ 1, 2, 3 }, arg.a.b) -- the caller's copy is untouched
    local t = { crt.thread.run(function() return nil, 5 end):await() }
    assert.are.equal(5, t[2])
  end)

  it("sends upvalues by copy, as they are at the call", function()
    local n = 10
    local tbl = { k = "v" }
    local f = function(x) return x + n, tbl.k end
    assert.are.same({ 11, "v" }, { crt.thread.run(f, 1):await() })
    n = 20
    tbl.k = "w"
    -- The cached function gets the new values.
    assert.are.same({ 21, "w" }, { crt.thread.run(f, 1):await() })
  end)

  it("runs recursive local functions (an upvalue that is the function itself)", function()
    local function fib(k) if k < 2 then return k end return fib(k - 1) + fib(k - 2) end
    assert.are.equal(6765, crt.thread.run(fib, 20):await())
  end)

  it("runs functions that call helper functions (upvalues that are functions)", function()
    local function sq(x) return x * x end
    local function sum_sq(list)
      local s = 0
      for _, v in ipairs(list) do s = s + sq(v) end
      return s
    end
    assert.are.equal(14, crt.thread.run(sum_sq, { 1, 2, 3 }):await())
  end)

  it("runs standard library C functions", function()
    assert.are.equal("3", crt.thread.run(tostring, 3):await())
    assert.are.equal("ab", crt.thread.run(string.rep, "ab", 1):await())
  end)

  it("re-raises a job's error with the worker's traceback", function()
    local t = crt.thread.run(function()
      local function inner() error("boom in the worker") end
      inner()
    end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("boom in the worker", err)
    assert.matches("%[crt thread %d+%] stack traceback:", err)
    assert.matches("'inner'", err)
    assert.are.equal("failed", t:status())
  end)

  it("keeps error objects that are tables", function()
    local t = crt.thread.run(function() error({ code = 42 }) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.same({ code = 42 }, err)
  end)

  it("names the unsendable value in arguments", function()
    local ok, err = pcall(crt.thread.run, function() end, { conn = io.stdout })
    assert.is_false(ok)
    assert.matches("crt.thread.run: cannot send argument #2 .conn (userdata)", err, 1, true)
  end)

  it("names the unsendable upvalue: userdata, coroutine", function()
    local conn = io.stdout
    local ok, err = pcall(crt.thread.run, function() return conn end)
    assert.is_false(ok)
    assert.matches("crt.thread.run: cannot send argument #1 upvalue 'conn' (userdata)", err, 1, true)
    local co = coroutine.create(function() end)
    ok, err = pcall(crt.thread.run, function() return co end)
    assert.is_false(ok)
    assert.matches("upvalue 'co' (thread)", err, 1, true)
  end)

  it("refuses C functions that are not standard library functions", function()
    local ok, err = pcall(crt.thread.run, crt.sleep, 1)
    assert.is_false(ok)
    assert.matches("crt.thread.run: cannot send argument #1 (C function)", err, 1, true)
    ok, err = pcall(crt.thread.run, "not a function")
    assert.is_false(ok)
    assert.matches("crt.thread.run: bad argument #1 (function expected, got string)", err, 1, true)
  end)

  it("fails the job when a result cannot be sent back", function()
    local t = crt.thread.run(function() return io.stdout end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("crt.thread: cannot return value (userdata)", err, 1, true)
  end)

  it("refuses values nested deeper than the codec allows, both ways", function()
    local deep = {}
    local cur = deep
    for _ = 1, 300 do
      cur.next = {}
      cur = cur.next
    end
    local ok, err = pcall(crt.thread.run, function() end, deep)
    assert.is_false(ok)
    assert.matches("crt.thread.run: cannot send argument #2", err, 1, true)
    assert.matches("too deep", err, 1, true)
    local t = crt.thread.run(function()
      local d = {}
      local c = d
      for _ = 1, 300 do
        c.next = {}
        c = c.next
      end
      return d
    end)
    ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("too deep", err, 1, true)
    -- The worker keeps serving.
    assert.are.equal(1, crt.thread.run(function() return 1 end):await())
  end)

  it("returns huge values", function()
    local s = crt.thread.run(function() return string.rep("x", 20 * 1024 * 1024) end):await()
    assert.are.equal(20 * 1024 * 1024, #s)
    local t = crt.thread.run(function()
      local r = {}
      for i = 1, 200000 do r[i] = { i = i } end
      return r
    end):await()
    assert.are.equal(200000, #t)
    assert.are.equal(200000, t[200000].i)
  end)

  it("serves 1,000 tasks that each await a job", function()
    local tasks = {}
    for i = 1, 1000 do
      tasks[i] = crt.spawn(function() return crt.thread.run(function(x) return x * 2 end, i):await() end)
    end
    local results = crt.all(tasks)
    local sum = 0
    for i = 1, 1000 do sum = sum + results[i][1] end
    assert.are.equal(1000 * 1001, sum)
  end)

  it("works in crt.all and crt.race", function()
    local r = crt.all {
      crt.thread.run(function() return 1 end),
      crt.thread.run(function() return 2 end),
    }
    assert.are.same({ { n = 1, 1 }, { n = 1, 2 } }, r)
    local gate = crt.channel()
    local v = crt.race {
      crt.thread.run(function() return "fast" end),
      crt.thread.run(function(g) return g:recv() end, gate),
    }
    assert.are.equal("fast", v)
    gate:close()
  end)
end)

describe("crt.thread.map #tsan", function()
  after_each(th.clean)

  it("returns the results in list order", function()
    local r = crt.thread.map(function(x) return x * x end, th.range(1000))
    assert.are.equal(1000, #r)
    for i = 1, 1000 do assert.are.equal(i * i, r[i]) end
  end)

  it("honours opts.chunk, and an empty list", function()
    local r = crt.thread.map(function() return crt.thread.id() end, th.range(10), { chunk = 10 })
    for i = 2, 10 do assert.are.equal(r[1], r[i]) end -- one job: one worker
    assert.are.same({}, crt.thread.map(function(x) return x end, {}))
  end)

  it("keeps every worker busy with the default chunking", function()
    local p = crt.thread.pool { size = 2 }
    -- Each item waits until both items have started: the map finishes with
    -- both results only if the two items ran on the two workers at once.
    local arrived, go = crt.channel(), crt.channel()
    local opener = crt.spawn(function()
      arrived:recv()
      arrived:recv()
      go:close()
    end)
    local r = p:map(function(x)
      arrived:send(x)
      local i = crt.select { { go, "recv" }, timeout = 20 }
      return i ~= nil
    end, { 1, 2 })
    assert.are.same({ true, true }, r)
    opener:await()
    p:close()
  end)

  it("has nil results as holes", function()
    local r = crt.thread.map(function(x) if x % 2 == 0 then return x end end, th.range(6))
    assert.are.same({ [2] = 2, [4] = 4, [6] = 6 }, r)
  end)

  it("re-raises the first error and cancels the rest", function()
    local ok, err = pcall(crt.thread.map, function(x)
      if x == 50 then error("bad item " .. x) end
      return x
    end, th.range(100), { chunk = 1 })
    assert.is_false(ok)
    assert.matches("bad item 50", err)
    assert.matches("stack traceback", err)
  end)

  it("names an unsendable item", function()
    local ok, err = pcall(crt.thread.map, function(x) return x end, { 1, 2, io.stdout })
    assert.is_false(ok)
    assert.matches("crt.thread.map: cannot send argument #2 [3] (userdata)", err, 1, true)
    local conn = io.stdout
    ok, err = pcall(crt.thread.map, function() return conn end, { 1 })
    assert.is_false(ok)
    assert.matches("crt.thread.map: cannot send argument #1 upvalue 'conn' (userdata)", err, 1, true)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.thread.map(1, {}) end,
      "crt.thread.map: bad argument #1 (function expected, got number)")
    assert.has_error(function() crt.thread.map(print, 1) end,
      "crt.thread.map: bad argument #2 (table expected, got number)")
    assert.has_error(function() crt.thread.map(print, {}, { chunk = 0 }) end,
      "crt.thread.map: bad argument #3 (opts.chunk must be an integer >= 1)")
  end)

  it("draws no progress bar when stderr is not a terminal", function()
    -- The spec's stderr is a file or a pipe: progress = true must not fail.
    local r = crt.thread.map(function(x) return x end, th.range(100), { progress = true })
    assert.are.equal(100, #r)
  end)

  it("draws a progress bar (done/total, rate, ETA) when stderr is a terminal", function()
    -- script(1) runs crt on a pseudo-terminal.
    local helper = require "tests.spec.helper"
    local src = "local t = {} for i = 1, 400 do t[i] = i end " ..
      "print(#crt.thread.map(function(x) return x end, t, {progress = true, chunk = 10}))"
    local cmd = "script -q -e -c " .. helper.shell_quote(helper.crt .. " -e " ..
      helper.shell_quote(src)) .. " /dev/null"
    local code, out = helper.run(cmd .. " </dev/null")
    assert.are.equal(0, code)
    assert.matches("400/400", out)
    assert.matches("/s", out)
    assert.matches("ETA", out)
    assert.matches("\n?400\r?\n", out)
  end)

  it("serves a map of 100,000 items", function()
    local r = crt.thread.map(function(x) return x * 2 end, th.range(100000))
    assert.are.equal(100000, #r)
    assert.are.equal(200000, r[100000])
  end)
end)

describe("crt.thread.pool #tsan", function()
  after_each(th.clean)

  it("runs init once in each worker, and the state persists", function()
    local p = crt.thread.pool { size = 2, init = function() INIT_COUNT = (INIT_COUNT or 0) + 1 end }
    assert.are.equal(2, p:size())
    local r = p:map(function() return INIT_COUNT end, th.range(20))
    for i = 1, 20 do assert.are.equal(1, r[i]) end
    p:close()
  end)

  it("keeps globals and required modules between jobs", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/crt_thread_mod.lua", "w"))
    f:write("LOADS = (LOADS or 0) + 1\nlocal M = { calls = 0 }\n",
      "function M.call() M.calls = M.calls + 1 return M.calls end\nreturn M\n")
    f:close()
    local p = crt.thread.pool { size = 1 }
    local job = function(d)
      package.path = d .. "/?.lua;" .. package.path
      local m = require "crt_thread_mod"
      return LOADS, m.call()
    end
    assert.are.same({ 1, 1 }, { p:run(job, dir):await() })
    assert.are.same({ 1, 2 }, { p:run(job, dir):await() })
    assert.are.same({ 1, 3 }, { p:run(job, dir):await() })
    p:close()
    os.remove(dir .. "/crt_thread_mod.lua")
    os.remove(dir)
  end)

  it("refuses a size below 1", function()
    local ok, err = pcall(crt.thread.pool, { size = 0 })
    assert.is_false(ok)
    assert.matches("crt.thread.pool: bad argument #1 (size must be from 1 to 1024, got 0)", err, 1, true)
    ok, err = pcall(crt.thread.pool, { size = -1 })
    assert.is_false(ok)
    assert.matches("size must be from 1 to 1024, got -1", err, 1, true)
    ok, err = pcall(crt.thread.pool, { size = 1.5 })
    assert.is_false(ok)
    assert.matches("size must be an integer", err, 1, true)
    ok, err = pcall(crt.thread.pool, { init = 3 })
    assert.is_false(ok)
    assert.matches("init must be a function", err, 1, true)
  end)

  it("raises on run, map and imap after close", function()
    local p = crt.thread.pool { size = 1 }
    assert.are.equal(1, p:run(function() return 1 end):await())
    p:close()
    p:close() -- idempotent
    assert.has_error(function() p:run(function() end) end, "pool:run: the pool is closed")
    assert.has_error(function() p:map(function() end, { 1 }) end, "pool:map: the pool is closed")
    assert.has_error(function() p:imap(function() end, { 1 }) end, "pool:imap: the pool is closed")
  end)

  it("fails jobs clearly when init fails", function()
    local p = crt.thread.pool { size = 2, init = function() error("init boom") end }
    local t = p:run(function() return 1 end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("crt.thread.pool: init failed: ", err, 1, true)
    assert.matches("init boom", err, 1, true)
    ok, err = pcall(p.map, p, function(x) return x end, { 1, 2, 3 })
    assert.is_false(ok)
    assert.matches("init failed", err, 1, true)
    p:close()
  end)

  it("refuses an unsendable init", function()
    local conn = io.stdout
    local ok, err = pcall(crt.thread.pool, { init = function() return conn end })
    assert.is_false(ok)
    assert.matches("crt.thread.pool: cannot send init value upvalue 'conn' (userdata)", err, 1, true)
  end)

  it("starts no thread before the first job", function()
    local before = crt.thread.stats().threads
    local p = crt.thread.pool { size = 3 }
    assert.are.equal(before, crt.thread.stats().threads)
    p:run(function() end):await()
    assert.are.equal(before + 3, crt.thread.stats().threads)
    p:close()
    assert.are.equal(before, crt.thread.stats().threads)
  end)

  it("imap yields (index, result) as jobs complete", function()
    local p = crt.thread.pool { size = 2 }
    local seen, count = {}, 0
    for i, v in p:imap(function(x) return x * 10 end, th.range(50), { chunk = 3 }) do
      assert.are.equal(i * 10, v)
      assert.is_nil(seen[i])
      seen[i] = true
      count = count + 1
    end
    assert.are.equal(50, count)
    -- Breaking out cancels the rest.
    for i in p:imap(function(x) return x end, th.range(50), { chunk = 1 }) do
      if i then break end
    end
    p:close()
  end)

  it("imap re-raises a job's error", function()
    local ok, err = pcall(function()
      for _ in crt.thread.imap(function(x) if x == 3 then error("imap boom") end return x end,
        th.range(5), { chunk = 1 }) do
      end
    end)
    assert.is_false(ok)
    assert.matches("imap boom", err)
  end)

  it("can be a to-be-closed variable", function()
    local before = crt.thread.stats().threads
    do
      local p <close> = crt.thread.pool { size = 1 }
      p:run(function() end):await()
    end
    assert.are.equal(before, crt.thread.stats().threads)
  end)

  it("keeps a pool nobody references alive while its job runs", function()
    local gate = crt.channel()
    local t = crt.thread.pool { size = 1 }:run(function(g) return g:recv() * 2 end, gate)
    crt.yield()
    collectgarbage()
    collectgarbage()
    gate:send(21)
    assert.are.equal(42, t:await())
  end)

  it("collects a pool whose cancelled job still runs, without waiting for it", function()
    local before = crt.thread.stats().threads
    local started = crt.channel()
    do
      local p = crt.thread.pool { size = 1 }
      local t = p:run(function(ch) ch:send(1) while true do end end, started)
      started:recv()
      t:cancel()
    end
    collectgarbage()
    collectgarbage()
    -- The interrupted job comes back, then the pool's thread is joined.
    th.wait_until(function() return crt.thread.stats().threads == before end, "the thread to be joined")
  end)

  it("reports a job that runs out of its memory limit, and keeps serving", function()
    local p = crt.thread.pool { size = 1, memory = 64 * 1024 * 1024 }
    local t = p:run(function()
      local hog = {}
      for i = 1, 1e9 do hog[i] = string.rep("x", 1000) .. i end
      return #hog
    end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("not enough memory", err, 1, true)
    assert.are.equal("fine", p:run(function() return "fine" end):await())
    p:close()
  end)
end)

describe("crt.thread.id #tsan", function()
  after_each(th.clean)

  it("is 0 on the loop thread and stable per worker", function()
    assert.are.equal(0, crt.thread.id())
    local p = crt.thread.pool { size = 1 }
    local a = p:run(function() return crt.thread.id() end):await()
    local b = p:run(function() return crt.thread.id() end):await()
    assert.is_true(a > 0)
    assert.are.equal(a, b)
    p:close()
    local p2 = crt.thread.pool { size = 2 }
    local ids = p2:map(function() return crt.thread.id() end, th.range(40), { chunk = 1 })
    local set, n = {}, 0
    for _, id in ipairs(ids) do
      if not set[id] then set[id] = true; n = n + 1 end
      assert.are_not.equal(a, id)
    end
    assert.is_true(n >= 1 and n <= 2)
    p2:close()
  end)
end)

describe("the crt table in values sent to a worker #tsan", function()
  it("stands for the worker's own crt, also inside tables and nested upvalues", function()
    local lib = crt
    local box = { lib = lib }
    local function inner() return lib.thread.id() end
    local same, id = crt.thread.run(function(b)
      return b.lib == crt, inner()
    end, box):await()
    assert.is_true(same)
    assert.is_number(id)
  end)
end)

describe("tasks returned by run (futures completed by the pool) #tsan", function()
  it("can be awaited by several tasks and combined with crt.all", function()
    local pool = crt.thread.pool { size = 1 }
    local a = pool:run(function() return "a", 2 end)
    local w1 = crt.spawn(function() return a:await() end)
    local w2 = crt.spawn(function() return a:await() end)
    assert.are.same({ "a", 2 }, { w1:await() })
    assert.are.same({ "a", 2 }, { w2:await() })
    assert.are.equal("done", a:status())
    local r = crt.all { pool:run(function() return 1 end), pool:run(function() return 2 end) }
    assert.are.same({ { n = 1, 1 }, { n = 1, 2 } }, r)
    pool:close()
  end)

  it("end cancelled when cancelled before their job started", function()
    local pool = crt.thread.pool { size = 1 }
    local release = crt.channel()
    local busy = pool:run(function(ch) ch:recv() return "busy" end, release)
    local queued = pool:run(function() return "never" end)
    assert.is_true(queued:cancel())
    assert.are.equal("cancelled", queued:status())
    assert.are.equal(crt.Cancelled, select(2, pcall(queued.await, queued)))
    release:send(true)
    assert.are.equal("busy", busy:await())
    pool:close()
  end)
end)
