-- crt.process.spawn: results, upvalues, errors with the child's traceback,
-- exit codes, signals, a crashing child, bad input. Runs inside the crt
-- binary: each `it` body is part of the main task.
--
-- The functions sent to children use the global `crt` (the child's own):
-- a `local crt = require "crt"` here would be an upvalue of each of them,
-- and the crt table cannot be copied to another process.
local helper = require "tests.spec.helper"

local crashlib = helper.build_dir .. "/crashlib.so"

-- The pids of this process's children (the loop thread forks them all).
local function children()
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  f = io.open(("/proc/self/task/%d/children"):format(pid))
  if not f then return {} end
  local list = {}
  for p in f:read("a"):gmatch("%d+") do list[#list + 1] = tonumber(p) end
  f:close()
  return list
end

-- Wait (a little) until every child has been reaped.
local function assert_no_children()
  local t0 = crt.now()
  while #children() > 0 and crt.now() - t0 < 10 do crt.sleep(0.01) end
  assert.are.same({}, children())
end

describe("crt.process.spawn", function()
  after_each(helper.assert_clean)

  it("runs a function in a child process and returns all its results", function()
    local c = crt.process.spawn(function(a, b) return a + b, "x", nil, { k = { 1, 2 } } end, 1, 2)
    assert.are.equal("integer", math.type(c.pid))
    assert.is_true(c.pid > 0)
    local a, b, n, t = c:await()
    assert.are.equal(3, a)
    assert.are.equal("x", b)
    assert.is_nil(n)
    assert.are.same({ k = { 1, 2 } }, t)
    assert.are.equal(4, select("#", c:await()))
  end)

  it("runs in another process with the whole crt API", function()
    local c = crt.process.spawn(function()
      local f = io.open("/proc/self/stat")
      local pid = f:read("n")
      f:close()
      local t = crt.spawn(function() crt.sleep(0.01) return "task" end)
      local ch = crt.channel()
      crt.spawn(function() ch:send("chan") end)
      return pid, crt.parent.pid, t:await(), ch:recv(), type(crt.process.spawn)
    end)
    local pid, ppid, task, chan, spawn = c:await()
    assert.are.equal(c.pid, pid)
    local f = io.open("/proc/self/stat")
    assert.are.equal(f:read("n"), ppid)
    f:close()
    assert.are.same({ "task", "chan", "function" }, { task, chan, spawn })
  end)

  it("copies upvalues and arguments deeply, functions included", function()
    local base = 10
    local shared = { 1, 2, 3 }
    local function double(x) return 2 * x end
    local c = crt.process.spawn(function(t1, t2)
      shared[4] = 4
      return base + double(#shared), t1 == t2, t1.n
    end, shared, shared)
    assert.are.same({ 18, true, nil }, { c:await() })
    assert.are.equal(3, #shared) -- the child had a copy
  end)

  it("carries large arguments and results (split into frames)", function()
    local big = ("0123456789"):rep(600 * 1024) -- 6 MiB
    local c = crt.process.spawn(function(s) return #s, s:sub(-10), s .. s end, big)
    local n, tail, twice = c:await()
    assert.are.equal(#big, n)
    assert.are.equal("0123456789", tail)
    assert.is_true(twice == big .. big)
  end)

  it("sees nil arguments and trailing nils", function()
    local c = crt.process.spawn(function(...) return select("#", ...), ... end, nil, 2, nil)
    assert.are.same({ 3, nil, 2, nil }, { c:await() })
  end)

  it("returns at once and runs children in parallel", function()
    -- Each child waits for a message that the parent sends only after it
    -- spawned all three: spawn must not wait for a child to finish, and the
    -- three run at the same time.
    local kids = {}
    for i = 1, 3 do
      kids[i] = crt.process.spawn(function(n) return crt.parent:recv() + n end, i)
    end
    -- Other tasks keep running while a task awaits a child.
    local ticked = crt.channel(1)
    local ticker = crt.spawn(function() crt.sleep(0.001) ticked:send(true) end)
    for i = 1, 3 do kids[i]:send(10) end
    for i = 1, 3 do assert.are.equal(10 + i, kids[i]:await()) end
    assert.is_true(ticked:recv())
    ticker:await()
  end)

  it("re-raises the child's error with the child's traceback", function()
    local c = crt.process.spawn(function()
      local function inner_child_function() error("child failure") end
      inner_child_function()
    end)
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.matches("child failure", err)
    assert.matches("stack traceback", err)
    assert.matches("inner_child_function", err)
    -- Awaiting again gives the same error.
    assert.matches("child failure", select(2, pcall(c.await, c)))
  end)

  it("re-raises a non-string error value as a copy", function()
    local c = crt.process.spawn(function() error({ code = 42 }) end)
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.are.same({ code = 42 }, err)
  end)

  it("reports os.exit(n) in the child with its exit code", function()
    local c = crt.process.spawn(function() os.exit(3) end)
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.matches("child process " .. c.pid .. " exited with code 3 without returning results", err)
  end)

  it("reports crt.exit(n) and os.exit(0) as exits without results", function()
    local c = crt.process.spawn(function() crt.exit(5) end)
    assert.matches("exited with code 5", select(2, pcall(c.await, c)))
    c = crt.process.spawn(function() os.exit(0) end)
    assert.matches("exited with code 0 without returning results", select(2, pcall(c.await, c)))
  end)

  it("kills with SIGTERM by default, or any signal by name or number", function()
    local c = crt.process.spawn(function() crt.sleep(30) end)
    assert.is_true(c:kill())
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.matches("child process " .. c.pid .. " was killed by signal SIGTERM %(15%)", err)
    for _, sig in ipairs({ "SIGKILL", "KILL", 9 }) do
      c = crt.process.spawn(function() crt.sleep(30) end)
      assert.is_true(c:kill(sig))
      assert.matches("was killed by signal SIGKILL %(9%)", select(2, pcall(c.await, c)))
    end
    c = crt.process.spawn(function() crt.sleep(30) end)
    c:kill("SIGUSR1")
    assert.matches("SIGUSR1", select(2, pcall(c.await, c)))
  end)

  it("kill on an exited child returns nil, message, ESRCH", function()
    local c = crt.process.spawn(function() return 1 end)
    c:await()
    local ok, err, code = c:kill()
    assert.is_nil(ok)
    assert.matches("has exited", err)
    assert.are.equal("ESRCH", code)
  end)

  it("checks the kill signal", function()
    local c = crt.process.spawn(function() crt.sleep(30) end)
    assert.has_error(function() c:kill("SIGNOPE") end, "child:kill: bad argument #1 (unknown signal 'SIGNOPE')")
    assert.has_error(function() c:kill({}) end,
      "child:kill: bad argument #1 (signal name or number expected, got table)")
    c:kill("SIGKILL")
    pcall(c.await, c)
  end)

  it("reports a child that crashes with SIGSEGV", function()
    local c = crt.process.spawn(function(path)
      local lib = assert(package.loadlib(path, "luaopen_crashlib"))()
      lib.segv()
    end, crashlib)
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.matches("child process " .. c.pid .. " was killed by signal SIGSEGV %(11%)", err)
    assert.is_nil(c:recv())
  end)

  it("reports a child that aborts", function()
    local c = crt.process.spawn(function(path)
      assert(package.loadlib(path, "luaopen_crashlib"))().abort()
    end, crashlib)
    assert.matches("killed by signal SIGABRT %(6%)", select(2, pcall(c.await, c)))
  end)

  it("reports a child that writes garbage on its pipe, and kills it", function()
    local c = crt.process.spawn(function(path)
      local lib = assert(package.loadlib(path, "luaopen_crashlib"))()
      lib.write(3, "\255\255\255\255 this is not a frame")
      crt.sleep(30)
    end, crashlib)
    local t0 = crt.now()
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.matches("child process " .. c.pid .. " sent a malformed message %(.*%) and was killed", err)
    assert.is_true(crt.now() - t0 < 10)
  end)

  it("refuses arguments that cannot cross, naming them", function()
    assert.has_error(function() crt.process.spawn(function() end, 1, io.stdout) end,
      "crt.process.spawn: cannot send argument #3 (userdata)")
    local f = io.stdout
    assert.has_error(function() crt.process.spawn(function() return f end) end,
      "crt.process.spawn: cannot send argument #1 upvalue 'f' (userdata)")
    local ok, err = pcall(crt.process.spawn, function() end, { conn = crt.channel() })
    assert.is_false(ok)
    assert.matches("crt.process.spawn: cannot send argument #2 .conn %(channel", err)
    assert.has_error(function() crt.process.spawn(42) end,
      "crt.process.spawn: bad argument #1 (function expected, got number)")
    assert.has_error(function() crt.process.spawn() end,
      "crt.process.spawn: bad argument #1 (function expected, got no value)")
  end)

  it("reports results that cannot cross, naming them", function()
    local c = crt.process.spawn(function() return 1, { x = io.stdout } end)
    local ok, err = pcall(c.await, c)
    assert.is_false(ok)
    assert.matches("crt.process.spawn: cannot send result #2 .x %(userdata%)", err)
    c = crt.process.spawn(function() return coroutine.create(print) end)
    assert.matches("cannot send result #1 %(thread%)", select(2, pcall(c.await, c)))
  end)

  it("lets many tasks await one child", function()
    local c = crt.process.spawn(function() crt.sleep(0.05) return 7 end)
    local waiters = {}
    for i = 1, 5 do waiters[i] = crt.spawn(function() return c:await() end) end
    for i = 1, 5 do assert.are.equal(7, waiters[i]:await()) end
  end)

  it("can be cancelled while awaiting, and the child goes on", function()
    local c = crt.process.spawn(function() crt.sleep(0.2) return "late" end)
    local t = crt.spawn(function() return c:await() end)
    crt.sleep(0.01)
    t:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
    assert.are.equal("cancelled", t:status())
    assert.are.equal("late", c:await())
  end)

  it("needs a task to await", function()
    local c = crt.process.spawn(function() return 1 end)
    local co = coroutine.create(function() return c:await() end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("child:await: must be called from a task", err)
    c:await()
  end)

  it("prints as a child with its pid and state", function()
    local c = crt.process.spawn(function() return 1 end)
    assert.matches("^crt.process.child: " .. c.pid .. " %(running%)$", tostring(c))
    c:await()
    assert.matches("%(done%)$", tostring(c))
  end)

  it("works from a stock lua5.4 through crt.so, starting the crt next to it", function()
    local q = helper.shell_quote
    -- The module is not named crt here: the child's function uses the
    -- child's global crt (an upvalue holding the crt table cannot cross).
    local chunk = "package.cpath = " .. ("%q"):format(helper.build_dir .. "/?.so;") ..
      " .. package.cpath local lib = require 'crt' print(lib.run(function() " ..
      "return lib.process.spawn(function(x) return x * 2, crt.parent.pid end, 21):await() end))"
    local code, out, err = helper.run(helper.lua .. " -e " .. q(chunk))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("^42\t%d+\n$", out)
  end)

  it("refuses --crt-child run by hand", function()
    local code, out, err = helper.run(helper.shell_quote(helper.crt) .. " --crt-child 3<&-")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("crt: %-%-crt%-child is for child processes started by crt.process.spawn", err)
  end)

  it("leaves no child process behind", function()
    assert_no_children()
  end)
end)
