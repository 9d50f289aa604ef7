-- crt.signal: handlers that run in new tasks, waiting for a signal, and the
-- crt binary's default SIGINT (a clean end with status 130).
local helper = require "tests.spec.helper"
local signal = crt.signal

local mypid = tonumber(assert(crt.fs.read("/proc/self/stat")):match("^(%d+)"))

-- Send a signal to this process from another program (kill(1)).
local function send(name, pid)
  local r = crt.process.exec({"kill", "-" .. name:gsub("^SIG", ""), tostring(pid or mypid)})
  assert(r and r.code == 0, "kill failed")
end

-- Run a crt script as a child; it must print "ready" once its handlers are
-- in place. Returns the process.
local function start_script(src)
  local p = assert(crt.process.command({helper.crt, "-e", src}))
  assert.are.equal("ready", p.stdout:readline())
  return p
end

local function read_all(stream)
  local parts = {}
  for chunk in function() return stream:read() end do parts[#parts + 1] = chunk end
  return table.concat(parts)
end

describe("crt.signal", function()
  after_each(function() helper.assert_clean() end)

  it("on runs the function in a new task at each signal, until stop", function()
    local got = crt.channel()
    local tasks = {}
    local h = signal.on("SIGUSR1", function(name)
      tasks[#tasks + 1] = true
      got:send(name)
    end)
    assert.matches("SIGUSR1", tostring(h))
    for _ = 1, 3 do
      send("SIGUSR1")
      assert.are.equal("SIGUSR1", got:recv())
    end
    assert.are.equal(3, #tasks)
    assert.is_true(h:stop())
    assert.is_false(h:stop()) -- already stopped
    assert.matches("stopped", tostring(h))
  end)

  it("several handlers of one signal all run; a stopped one does not", function()
    local got = crt.channel()
    local h1 = signal.on("SIGUSR2", function() got:send("one") end)
    local h2 = signal.on(12, function(name) got:send("two " .. name) end) -- SIGUSR2 by number
    send("SIGUSR2")
    local a, b = got:recv(), got:recv()
    if a > b then a, b = b, a end
    assert.are.same({"one", "two SIGUSR2"}, {a, b})
    h1:stop()
    send("SIGUSR2")
    assert.are.equal("two SIGUSR2", got:recv())
    h2:stop()
  end)

  it("a handler stays installed when its handle is collected", function()
    local got = crt.channel()
    signal.on("SIGHUP", function() got:send(true) end)
    collectgarbage()
    collectgarbage()
    send("SIGHUP")
    assert.is_true(got:recv())
    -- Keep the process safe from later SIGHUPs' default action.
  end)

  it("wait parks the task until the signal comes", function()
    local t = crt.spawn(function() return signal.wait("SIGWINCH") end)
    crt.yield()
    assert.is_false(t:done())
    send("SIGWINCH")
    assert.are.equal("SIGWINCH", t:await())
    t = crt.spawn(function() return signal.wait("USR1") end) -- without SIG
    crt.yield()
    send("SIGUSR1")
    assert.are.equal("SIGUSR1", t:await())
  end)

  it("a task waiting for a signal can be cancelled", function()
    local baseline = crt.stats().tasks
    local t = crt.spawn(function() return signal.wait("SIGTERM") end)
    crt.yield()
    t:cancel()
    assert.is_false(pcall(t.await, t))
    assert.are.equal(baseline, crt.stats().tasks)
    assert.are.same({nil, "timeout"}, {crt.timeout(0.01, signal.wait, "SIGCHLD")})
  end)

  it("rejects signals that cannot be caught and bad arguments", function()
    assert.has_error(function() signal.on("SIGKILL", print) end,
      "crt.signal.on: bad argument #1 (SIGKILL and SIGSTOP cannot be caught)")
    assert.has_error(function() signal.wait("SIGSTOP") end,
      "crt.signal.wait: bad argument #1 (SIGKILL and SIGSTOP cannot be caught)")
    assert.has_error(function() signal.on("SIGNOPE", print) end,
      "crt.signal.on: bad argument #1 (unknown signal 'SIGNOPE')")
    assert.has_error(function() signal.on(0, print) end,
      "crt.signal.on: bad argument #1 (not a signal number)")
    assert.has_error(function() signal.on(1.5, print) end,
      "crt.signal.on: bad argument #1 (not a signal number)")
    assert.has_error(function() signal.on({}, print) end,
      "crt.signal.on: bad argument #1 (signal name or number expected, got table)")
    assert.has_error(function() signal.on("SIGUSR1") end,
      "crt.signal.on: bad argument #2 (function expected, got no value)")
    assert.has_error(function() signal.wait() end,
      "crt.signal.wait: bad argument #1 (signal name or number expected, got no value)")
  end)

  describe("in the crt binary", function()
    it("SIGINT ends the script: tasks cancelled, children reaped, status 130", function()
      local p = start_script([[
        local child = crt.process.command({"sleep", "30"})
        crt.spawn(function()
          local ok, err = pcall(crt.sleep, 30)
          print("cleanup ran", err == crt.Cancelled)
        end)
        crt.yield()
        print("ready")
        print("child", child.pid)
        io.stdout:flush()
        crt.sleep(30)
      ]])
      local pid = tonumber(p.stdout:readline():match("child%s+(%d+)"))
      assert.is_true(p:kill("SIGINT"))
      local out = read_all(p.stdout)
      assert.are.same({130, nil}, {p:wait()})
      assert.matches("cleanup ran\ttrue", out, 1, true)
      -- The child was terminated and reaped before crt exited.
      assert.are.equal(1, crt.process.exec({"sh", "-c", "kill -0 " .. pid .. " 2>/dev/null"}).code)
    end)

    it("a SIGINT handler replaces the default while it is installed", function()
      local p = start_script([[
        local got = crt.channel()
        local h = crt.signal.on("SIGINT", function() got:send(true) end)
        print("ready") io.stdout:flush()
        got:recv()
        print("handled") io.stdout:flush()
        h:stop()
        print("stopped") io.stdout:flush()
        crt.sleep(30)
      ]])
      p:kill("SIGINT")
      assert.are.equal("handled", p.stdout:readline())
      assert.are.equal("stopped", p.stdout:readline())
      p:kill("SIGINT") -- the default is back
      assert.are.same({130, nil}, {p:wait()})
    end)

    it("signal.wait('SIGINT') takes the signal instead of the default", function()
      local p = start_script([[
        local t = crt.spawn(function() return crt.signal.wait("SIGINT") end)
        crt.yield()
        print("ready") io.stdout:flush()
        print("got " .. t:await())
      ]])
      p:kill("SIGINT")
      assert.are.equal("got SIGINT", p.stdout:readline())
      assert.are.same({0, nil}, {p:wait()})
    end)

    it("handlers do not keep crt alive", function()
      local r = assert(crt.process.exec({helper.crt, "-e",
        'crt.signal.on("SIGTERM", print) crt.signal.on("SIGINT", print) print("done")'},
        {timeout = 60}))
      assert.are.equal(0, r.code)
      assert.are.equal("done\n", r.stdout)
    end)

    it("an error in a handler is reported like any unawaited task error", function()
      local p = start_script([[
        crt.signal.on("SIGUSR1", function() error("handler failed") end)
        local t = crt.spawn(crt.signal.wait, "SIGUSR2")
        crt.yield() -- t waits now
        print("ready") io.stdout:flush()
        t:await()
      ]])
      p:kill("SIGUSR1") -- delivered before SIGUSR2 (sent after it)
      p:kill("SIGUSR2")
      local err = read_all(p.stderr)
      assert.are.same({1, nil}, {p:wait()})
      assert.matches("handler failed", err, 1, true)
    end)
  end)
end)
