-- Tasks: spawn, await, cancel, status, sleep, yield, now, after, every, all,
-- race, timeout, group, and their failure paths. Runs inside the crt binary:
-- each `it` body is part of the main task.
local crt = require "crt"
local helper = require "tests.spec.helper"

describe("crt.spawn and task:await", function()
  after_each(helper.assert_clean)

  it("runs a function as a task and returns all its results", function()
    local t = crt.spawn(function(a, b) return a + b, "x", nil end, 1, 2)
    assert.are.equal("pending", t:status())
    local a, b, c = t:await()
    assert.are.same({ 3, "x", nil }, { a, b, c })
    assert.are.equal(3, select("#", t:await()))
    assert.are.equal("done", t:status())
    assert.is_true(t:done())
  end)

  it("can await a task many times and from many tasks", function()
    local t = crt.spawn(function() crt.sleep(0.001) return 7 end)
    local waiters = {}
    for i = 1, 10 do waiters[i] = crt.spawn(function() return t:await() end) end
    for i = 1, 10 do assert.are.equal(7, waiters[i]:await()) end
    assert.are.equal(7, t:await())
  end)

  it("starts tasks at the next turn, in spawn order", function()
    local order = {}
    for i = 1, 5 do crt.spawn(function() order[#order + 1] = i end) end
    assert.are.same({}, order)
    crt.yield()
    assert.are.same({ 1, 2, 3, 4, 5 }, order)
  end)

  it("re-raises a task's error with the task's traceback", function()
    local t = crt.spawn(function()
      local function inner() error("inner failure") end
      inner()
    end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("inner failure", err)
    assert.matches("stack traceback", err)
    assert.matches("in %a+ 'inner'", err)
    assert.are.equal("failed", t:status())
  end)

  it("re-raises non-string errors as they are", function()
    local obj = { code = 42 }
    local t = crt.spawn(function() error(obj) end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.equal(obj, err)
  end)

  it("refuses to await itself", function()
    local self_task
    self_task = crt.spawn(function()
      crt.yield()
      return pcall(self_task.await, self_task)
    end)
    local ok, err = self_task:await()
    assert.is_false(ok)
    assert.matches("task:await: a task cannot await itself", err)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.spawn(42) end,
      "crt.spawn: bad argument #1 (function expected, got number)")
    assert.has_error(function() crt.spawn() end,
      "crt.spawn: bad argument #1 (function expected, got no value)")
    local t = crt.spawn(function() end)
    assert.has_error(function() t.await({}) end)
    assert.matches("task:await: bad argument #1 %(task expected, got table%)",
      select(2, pcall(t.await, {})))
    t:await()
  end)

  it("supports yields across pcall, metamethods and iterators", function()
    local t = crt.spawn(function()
      local ok, v = pcall(function() crt.sleep(0.001) return "through pcall" end)
      assert(ok)
      local mt = setmetatable({}, { __index = function(_, k) crt.yield() return k .. "!" end })
      local it = 0
      for x in function() crt.yield() it = it + 1 if it <= 2 then return it end end do
        assert(x)
      end
      local ok2, err = xpcall(function() crt.sleep(0.001) error("e") end, debug.traceback)
      assert(not ok2 and err:match("e"))
      return v, mt.key, it
    end)
    assert.are.same({ "through pcall", "key!", 3 }, { t:await() })
  end)

  it("runs 100,000 concurrent tasks", function()
    local n = 0
    local tasks = {}
    for i = 1, 100000 do
      tasks[i] = crt.spawn(function() crt.sleep(0.001) n = n + 1 end)
    end
    for i = 1, 100000 do tasks[i]:await() end
    assert.are.equal(100000, n)
  end)

  it("treats a bare coroutine.yield in a task as crt.yield", function()
    local t = crt.spawn(function() coroutine.yield(1, 2) return "after" end)
    assert.are.equal("after", t:await())
  end)

  it("lets plain coroutines run inside tasks", function()
    local co = coroutine.wrap(function() coroutine.yield(1) return 2 end)
    assert.are.equal(1, co())
    assert.are.equal(2, co())
  end)

  it("refuses waiting calls inside a plain coroutine of a task", function()
    local co = coroutine.create(function() crt.sleep(0.001) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("crt.sleep: must be called from a task", err)
  end)
end)

describe("task:cancel", function()
  after_each(helper.assert_clean)

  it("cancels a task waiting on a timer", function()
    local t = crt.spawn(function() crt.sleep(100) end)
    crt.yield()
    assert.are.equal("running", t:status())
    assert.is_true(t:cancel())
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.equal(crt.Cancelled, err)
    assert.are.equal("cancelled", t:status())
  end)

  it("cancels a task that never started: its body never runs", function()
    local ran = false
    local t = crt.spawn(function() ran = true end)
    t:cancel()
    assert.is_false(pcall(t.await, t))
    assert.is_false(ran)
    assert.are.equal("cancelled", t:status())
  end)

  it("cancels a task waiting on a channel", function()
    local ch = crt.channel()
    local t = crt.spawn(function() return ch:recv() end)
    crt.yield()
    t:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
    -- the channel forgot the waiter: a value sent now stays queued
    assert.is_true(ch:try_send(1))
    assert.are.equal(1, #ch)
  end)

  it("cancels a task awaiting another task", function()
    local inner = crt.spawn(function() crt.sleep(100) end)
    local outer = crt.spawn(function() return inner:await() end)
    crt.yield()
    outer:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(outer.await, outer)))
    assert.are.equal("running", inner:status())
    inner:cancel()
    pcall(inner.await, inner)
  end)

  it("lets the task clean up with pcall and return normally", function()
    local cleaned = false
    local t = crt.spawn(function()
      local ok, err = pcall(crt.sleep, 100)
      assert(not ok and err == crt.Cancelled)
      crt.sleep(0.001) -- waiting again after a cancel works
      cleaned = true
      return "cleaned"
    end)
    crt.yield()
    t:cancel()
    assert.are.equal("cleaned", t:await())
    assert.is_true(cleaned)
    assert.are.equal("done", t:status())
  end)

  it("closes to-be-closed variables of a cancelled task", function()
    local closed = false
    local t = crt.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      crt.sleep(100)
    end)
    crt.yield()
    t:cancel()
    pcall(t.await, t)
    assert.is_true(closed)
  end)

  it("delivers a cancel that arrives while the task runs at its next wait", function()
    local t
    t = crt.spawn(function()
      t:cancel()
      local x = 0
      for i = 1, 10 do x = x + i end -- keeps running until it waits
      crt.sleep(100)
      return x
    end)
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
  end)

  it("is a no-op on a finished task", function()
    local t = crt.spawn(function() return 1 end)
    t:await()
    assert.is_false(t:cancel())
    assert.are.equal("done", t:status())
    assert.are.equal(1, t:await())
  end)

  it("cancels a sleep(math.huge)", function()
    local t = crt.spawn(function() crt.sleep(math.huge) end)
    crt.yield()
    t:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
  end)

  -- Issue 14, bug 1: awaiting someone else's cancellation is an error of the
  -- awaiter, not a cancellation of it.
  it("raises crt.Cancelled into the awaiter of a cancelled task, which fails (not cancelled)", function()
    local inner = crt.spawn(function() crt.sleep(100) end)
    local outer = crt.spawn(function() return inner:await() end)
    crt.yield()
    inner:cancel()
    local ok, err = pcall(outer.await, outer)
    assert.is_false(ok)
    assert.are.equal(crt.Cancelled, err) -- still the value callers compare with
    assert.are.equal("cancelled", inner:status())
    assert.are.equal("failed", outer:status())
  end)

  it("reports crt.Cancelled escaping a main chunk that awaited a cancelled task", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local t = crt.spawn(function() crt.sleep(1) end)
t:cancel()
print("before")
t:await()
print("after")
]])
    f:close()
    local code, out, err = helper.run(helper.shell_quote(helper.crt) .. " " .. script)
    os.remove(script)
    assert.are.equal("before\n", out)
    assert.are.equal(1, code)
    assert.matches("error in the main chunk", err, 1, true)
    assert.matches("crt.Cancelled (in a task that was not cancelled", err, 1, true)
    assert.matches(":4: in main chunk", err, 1, true)
  end)

  it("reports crt.Cancelled escaping a spawned task nobody awaits", function()
    local code, _, err = helper.run(helper.shell_quote(helper.crt) .. [[ -e '
local t = crt.spawn(function() crt.sleep(1) end)
local w = crt.spawn(function() t:await() end)
crt.yield()
t:cancel()
crt.sleep(0.01)']])
    assert.are.equal(1, code)
    assert.matches("crt.Cancelled (in a task that was not cancelled", err, 1, true)
  end)

  it("crt.Cancelled prints as crt.Cancelled", function()
    assert.are.equal("crt.Cancelled", tostring(crt.Cancelled))
  end)
end)

describe("crt.sleep, crt.yield, crt.now", function()
  after_each(helper.assert_clean)

  it("sleeps at least the time asked, as measured by crt.now", function()
    for _, s in ipairs { 0.001, 0.005, 0.02 } do
      local t0 = crt.now()
      crt.sleep(s)
      assert.is_true(crt.now() - t0 >= s)
    end
  end)

  it("crt.now is monotonic and read afresh", function()
    local a = crt.now()
    local b = crt.now()
    assert.is_true(b >= a)
    assert.are.equal("number", math.type(a) and "number")
  end)

  it("wakes sleepers in deadline order", function()
    local order = {}
    local tasks = {}
    for _, d in ipairs { 0.03, 0.01, 0.02 } do
      tasks[#tasks + 1] = crt.spawn(function() crt.sleep(d) order[#order + 1] = d end)
    end
    for _, t in ipairs(tasks) do t:await() end
    assert.are.same({ 0.01, 0.02, 0.03 }, order)
  end)

  it("sleep(0) and negative sleeps yield once", function()
    local ran = false
    crt.spawn(function() ran = true end)
    crt.sleep(-1)
    assert.is_true(ran)
    ran = false
    crt.spawn(function() ran = true end)
    crt.sleep(0)
    assert.is_true(ran)
  end)

  it("crt.yield lets every other ready task run once", function()
    local log = {}
    local a = crt.spawn(function() for i = 1, 3 do log[#log + 1] = "a" .. i crt.yield() end end)
    local b = crt.spawn(function() for i = 1, 3 do log[#log + 1] = "b" .. i crt.yield() end end)
    a:await()
    b:await()
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.sleep("x") end,
      "crt.sleep: bad argument #1 (number expected, got string)")
    assert.has_error(function() crt.sleep() end,
      "crt.sleep: bad argument #1 (number expected, got no value)")
    assert.has_error(function() crt.sleep(0 / 0) end,
      "crt.sleep: bad argument #1 (number expected, got nan)")
  end)
end)

describe("crt.after and crt.every", function()
  after_each(helper.assert_clean)

  it("calls a function once after a delay, in a task of its own", function()
    local done = crt.channel(1)
    local t0 = crt.now()
    crt.after(0.01, function()
      crt.sleep(0.001) -- the callback is a task: it can wait
      done:send(crt.now() - t0)
    end)
    assert.is_true(done:recv() >= 0.01)
  end)

  it("repeats until stopped, and never calls again after stop returned", function()
    local n = 0
    local ch = crt.channel()
    local timer
    timer = crt.every(0.001, function()
      n = n + 1
      if n == 3 then ch:send(true) end
    end)
    ch:recv()
    assert.is_true(timer:stop())
    local seen = n
    crt.sleep(0.01)
    assert.are.equal(seen, n)
    assert.is_false(timer:stop())
  end)

  it("stop() before firing prevents the call", function()
    local called = false
    local timer = crt.after(0.001, function() called = true end)
    timer:stop()
    crt.sleep(0.005)
    assert.is_false(called)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.after("1", print) end)
    assert.has_error(function() crt.after(1) end,
      "crt.after: bad argument #2 (function expected, got no value)")
    assert.has_error(function() crt.every(0, print) end,
      "crt.every: bad argument #1 (interval must be > 0)")
  end)
end)

describe("crt.all", function()
  after_each(helper.assert_clean)

  it("returns the packed results of every task, in list order", function()
    local slow = crt.spawn(function() crt.sleep(0.01) return "slow" end)
    local r = crt.all { slow, function() return 1, nil, 3 end }
    assert.are.same({ n = 1, "slow" }, r[1])
    assert.are.same({ n = 3, 1, nil, 3 }, r[2])
  end)

  it("returns an empty list for no tasks", function()
    assert.are.same({}, crt.all {})
  end)

  it("cancels the rest and re-raises on the first failure", function()
    local other = crt.spawn(function() crt.sleep(100) end)
    local ok, err = pcall(crt.all, { other, function() error("all failed") end })
    assert.is_false(ok)
    assert.matches("all failed", err)
    crt.yield()
    assert.are.equal("cancelled", other:status())
  end)

  it("checks its arguments before starting anything", function()
    local started = false
    local ok, err = pcall(crt.all, { function() started = true end, 42 })
    assert.is_false(ok)
    assert.matches("crt.all: bad argument #1 %(entry 2 is a number", err)
    crt.yield()
    assert.is_false(started)
    assert.has_error(function() crt.all(nil) end,
      "crt.all: bad argument #1 (table expected, got nil)")
  end)

  it("cancels its tasks when the awaiting task is cancelled", function()
    local child = crt.spawn(function() crt.sleep(100) end)
    local t = crt.spawn(function() return crt.all { child } end)
    crt.yield()
    t:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
    crt.yield()
    assert.are.equal("cancelled", child:status())
  end)
end)

describe("crt.race", function()
  after_each(helper.assert_clean)

  it("returns the results of the first to finish and cancels the rest", function()
    local slow = crt.spawn(function() crt.sleep(100) return "slow" end)
    local a, b = crt.race { slow, function() crt.sleep(0.001) return "fast", 2 end }
    assert.are.same({ "fast", 2 }, { a, b })
    crt.yield()
    assert.are.equal("cancelled", slow:status())
  end)

  it("re-raises when the first to finish failed", function()
    local ok, err = pcall(crt.race, {
      function() crt.sleep(100) end,
      function() error("race failed") end,
    })
    assert.is_false(ok)
    assert.matches("race failed", err)
  end)

  it("refuses an empty list", function()
    assert.has_error(function() crt.race {} end, "crt.race: bad argument #1 (empty list)")
  end)
end)

describe("crt.timeout", function()
  after_each(helper.assert_clean)

  it("returns fn's results when it finishes in time", function()
    assert.are.same({ 1, 2 }, { crt.timeout(1, function(a) return a, 2 end, 1) })
  end)

  it("returns nil, 'timeout' and cancels fn when the deadline passes", function()
    local cleaned = false
    local r = { crt.timeout(0.01, function()
      local ok = pcall(crt.sleep, 100)
      cleaned = not ok
    end) }
    assert.are.same({ nil, "timeout" }, r)
    assert.is_true(cleaned) -- the cleanup ran before timeout returned
  end)

  it("answers timeout even when fn catches the cancel and returns", function()
    local r = { crt.timeout(0.01, function()
      pcall(crt.sleep, 100)
      return "caught"
    end) }
    assert.are.same({ nil, "timeout" }, r)
  end)

  it("takes a task instead of a function, and cancels that task", function()
    local slow = crt.spawn(function() crt.sleep(100) end)
    assert.are.same({ nil, "timeout" }, { crt.timeout(0.01, slow) })
    assert.are.equal("cancelled", slow:status())
    local quick = crt.spawn(function() return "quick" end)
    assert.are.equal("quick", crt.timeout(1, quick))
  end)

  it("re-raises fn's error", function()
    local ok, err = pcall(crt.timeout, 1, function() error("timeout fn failed") end)
    assert.is_false(ok)
    assert.matches("timeout fn failed", err)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.timeout("1", print) end,
      "crt.timeout: bad argument #1 (number expected, got string)")
    assert.has_error(function() crt.timeout(1, 2) end,
      "crt.timeout: bad argument #2 (function or task expected, got number)")
  end)
end)

describe("crt.group", function()
  after_each(helper.assert_clean)

  it("returns when every child has finished", function()
    local done = {}
    local r = crt.group(function(g)
      for i = 1, 5 do g:spawn(function() crt.sleep(0.001 * i) done[i] = true end) end
      return "body result"
    end)
    assert.are.equal("body result", r)
    assert.are.same({ true, true, true, true, true }, done)
  end)

  it("children can spawn more children", function()
    local n = 0
    crt.group(function(g)
      g:spawn(function()
        crt.sleep(0.001)
        g:spawn(function() crt.sleep(0.001) n = n + 1 end)
        n = n + 1
      end)
    end)
    assert.are.equal(2, n)
  end)

  it("cancels the siblings on the first failure, waits for them, re-raises", function()
    local sibling_cleaned = false
    local ok, err = pcall(crt.group, function(g)
      g:spawn(function()
        local ok = pcall(crt.sleep, 100)
        crt.sleep(0.001) -- cleanup that waits
        sibling_cleaned = not ok
      end)
      g:spawn(function() crt.sleep(0.001) error("child failed") end)
    end)
    assert.is_false(ok)
    assert.matches("child failed", err)
    assert.is_true(sibling_cleaned)
  end)

  it("cancels the children when the body fails", function()
    local child
    local ok, err = pcall(crt.group, function(g)
      child = g:spawn(function() crt.sleep(100) end)
      error("body failed")
    end)
    assert.is_false(ok)
    assert.matches("body failed", err)
    assert.are.equal("cancelled", child:status())
  end)

  it("refuses spawns after it finished, and bad calls", function()
    local saved
    crt.group(function(g) saved = g end)
    assert.has_error(function() saved:spawn(print) end, "group:spawn: the group has finished")
    crt.group(function(g)
      assert.has_error(function() g.spawn(print) end,
        "group:spawn: call it as g:spawn(fn, ...)")
      assert.has_error(function() g:spawn(1) end,
        "group:spawn: bad argument #1 (function expected, got number)")
    end)
    assert.has_error(function() crt.group(1) end,
      "crt.group: bad argument #1 (function expected, got number)")
  end)
end)

describe("crt.run", function()
  after_each(helper.assert_clean)

  it("inside a task, runs fn as a task and returns its results", function()
    assert.are.same({ 1, 2 }, { crt.run(function(a) crt.sleep(0.001) return a, 2 end, 1) })
  end)

  it("re-raises fn's error", function()
    local ok, err = pcall(crt.run, function() error("run failed") end)
    assert.is_false(ok)
    assert.matches("run failed", err)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.run(1) end,
      "crt.run: bad argument #1 (function expected, got number)")
  end)
end)

describe("crt.pid", function()
  after_each(helper.assert_clean)

  it("is this process's id, the same in a thread worker, another in a child", function()
    local f = assert(io.open("/proc/self/stat"))
    local self_pid = tonumber(f:read("l"):match("^(%d+)"))
    f:close()
    assert.are.equal(self_pid, crt.pid())
    assert.are.equal(self_pid, crt.thread.run(function() return crt.pid() end):await())
    local child_pid = crt.process.spawn(function() return crt.pid() end):await()
    assert.is_true(math.type(child_pid) == "integer" and child_pid ~= self_pid)
  end)
end)
