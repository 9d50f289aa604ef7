-- crt.process.exec and crt.process.command: external programs, their
-- output, input, exit status, timeouts, and cleanup on cancellation.
local helper = require "tests.spec.helper"
local process = crt.process

local function check_fail(code, ok, msg, got)
  assert.is_nil(ok)
  assert.is_string(msg)
  assert.are.equal(code, got, msg)
end

-- Is a process with this pid still there (not even a zombie of ours)?
local function alive(pid)
  return process.exec({"sh", "-c", "kill -0 " .. pid .. " 2>/dev/null"}).code == 0
end

local function wait_gone(pid)
  for _ = 1, 500 do
    if not alive(pid) then return true end
    crt.sleep(0.01)
  end
  return false
end

local function wait_file(path)
  for _ = 1, 500 do
    local s = crt.fs.read(path)
    if s and s:match("\n$") then return s end
    crt.sleep(0.01)
  end
  error("no " .. path)
end

local function tmpname(tag)
  return ("/tmp/crt-exec-spec-%s-%d-%d"):format(tag, os.time(), math.random(1e9))
end

describe("crt.process.exec", function()
  after_each(function() helper.assert_clean() end)

  it("collects the exit code, stdout and stderr whatever the status", function()
    local r = assert(process.exec({"sh", "-c", "echo out; echo err >&2; exit 3"}))
    assert.are.same({code = 3, stdout = "out\n", stderr = "err\n", timed_out = false}, r)
    r = assert(process.exec({"true"}))
    assert.are.equal(0, r.code)
    assert.is_nil(r.signal)
    assert.are.equal("", r.stdout)
  end)

  it("reports death by a signal", function()
    local r = assert(process.exec({"sh", "-c", "kill -TERM $$"}))
    assert.is_nil(r.code)
    assert.are.equal("SIGTERM", r.signal)
  end)

  it("passes arguments verbatim (no shell), numbers as strings", function()
    local r = assert(process.exec({"printf", "%s|", "a b", "$HOME", "*", 42}))
    assert.are.equal("a b|$HOME|*|42|", r.stdout)
  end)

  it("feeds stdin, also large inputs, and gives /dev/null without it", function()
    assert.are.equal("some input", process.exec({"cat"}, {stdin = "some input"}).stdout)
    local big = string.rep("0123456789", 1000000) -- 10 MB, more than a pipe holds
    local r = assert(process.exec({"wc", "-c"}, {stdin = big}))
    assert.are.equal(#big, tonumber(r.stdout))
    r = assert(process.exec({"cat"}, {stdin = big}))
    assert.is_true(r.stdout == big)
    assert.are.equal("", process.exec({"cat"}).stdout)
    assert.are.equal("", process.exec({"cat"}, {stdin = ""}).stdout)
    -- A program that does not read its input still finishes.
    assert.are.equal(0, process.exec({"true"}, {stdin = big}).code)
  end)

  it("collects large outputs on both streams", function()
    local r = assert(process.exec({"sh", "-c",
      "head -c 5000000 /dev/zero; head -c 3000000 /dev/zero >&2"}))
    assert.are.equal(5000000, #r.stdout)
    assert.are.equal(3000000, #r.stderr)
  end)

  it("sets cwd and env (merged with the environment unless clear_env)", function()
    local r = assert(process.exec({"pwd"}, {cwd = "/tmp"}))
    assert.are.equal("/tmp\n", r.stdout)
    r = assert(process.exec({"sh", "-c", 'echo "$CRT_A,$CRT_B,${HOME:+home}"'},
      {env = {CRT_A = "x y", CRT_B = 2}}))
    assert.are.equal("x y,2,home\n", r.stdout)
    r = assert(process.exec({"/bin/sh", "-c", 'echo "${HOME-unset},$ONLY"'},
      {env = {ONLY = "1"}, clear_env = true}))
    assert.are.equal("unset,1\n", r.stdout)
    r = assert(process.exec({"/usr/bin/env"}, {clear_env = true}))
    assert.are.equal("", r.stdout)
    r = assert(process.exec({"sh", "-c", 'echo "${HOME-removed}"'}, {env = {HOME = false}}))
    assert.are.equal("removed\n", r.stdout)
  end)

  it("kills the program at the timeout and says so", function()
    local r = assert(process.exec({"sh", "-c", "echo started; exec sleep 30"}, {timeout = 0.1}))
    assert.is_true(r.timed_out)
    assert.are.equal("SIGKILL", r.signal)
    assert.is_nil(r.code)
    assert.are.equal("started\n", r.stdout)
    r = assert(process.exec({"echo", "quick"}, {timeout = 30}))
    assert.is_false(r.timed_out)
    assert.are.equal("quick\n", r.stdout)
  end)

  it("a timeout also ends the wait for output held open by a grandchild", function()
    local pidfile = tmpname("bg")
    local r = assert(process.exec({"sh", "-c", "sleep 30 & echo $! > " .. pidfile .. "; echo bg"},
      {timeout = 0.2}))
    assert.is_true(r.timed_out)
    assert.are.equal(0, r.code) -- the shell itself exited normally
    assert.are.equal("bg\n", r.stdout)
    local pid = wait_file(pidfile):match("%d+")
    process.exec({"kill", pid})
    assert(crt.fs.unlink(pidfile))
  end)

  it("returns nil, message, code when the program cannot be started", function()
    local ok, msg, code = process.exec({"no-such-program-crt"})
    check_fail("ENOENT", ok, msg, code)
    assert.matches("no-such-program-crt: no such file or directory", msg, 1, true)
    check_fail("ENOENT", process.exec({"/no/such/path"}))
    check_fail("ENOENT", process.exec({"true"}, {cwd = "/no/such/dir"}))
    -- A file without the execute permission: EACCES, also for root.
    local path = tmpname("noexec")
    assert(crt.fs.write(path, "#!/bin/sh\necho hi\n"))
    check_fail("EACCES", process.exec({path}))
    assert(crt.fs.unlink(path))
    check_fail("EACCES", process.exec({"/tmp"}))
  end)

  it("cancelling the waiting task kills the program", function()
    local pidfile = tmpname("cancel")
    local t = crt.spawn(function()
      return process.exec({"sh", "-c", "echo $$ > " .. pidfile .. "; exec sleep 30"})
    end)
    local pid = wait_file(pidfile):match("%d+")
    assert.is_true(alive(pid))
    t:cancel()
    assert.is_false(pcall(t.await, t))
    assert.is_true(wait_gone(pid))
    assert(crt.fs.unlink(pidfile))
    -- crt.timeout does the same.
    assert.are.same({nil, "timeout"}, {crt.timeout(0.05, process.exec, {"sleep", "30"})})
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() process.exec("ls") end,
      "crt.process.exec: bad argument #1 (table expected, got string)")
    assert.has_error(function() process.exec({}) end,
      "crt.process.exec: bad argument #1 (empty argument list)")
    assert.has_error(function() process.exec({""}) end,
      "crt.process.exec: bad argument #1 (empty program name)")
    assert.has_error(function() process.exec({"ls", {}}) end,
      "crt.process.exec: bad argument #1 (entry 2: string expected, got table)")
    assert.has_error(function() process.exec({"ls", "a\0b"}) end,
      "crt.process.exec: bad argument #1 (entry 2 contains a NUL byte)")
    assert.has_error(function() process.exec({"ls"}, "x") end,
      "crt.process.exec: bad argument #2 (table expected, got string)")
    assert.has_error(function() process.exec({"ls"}, {timeout = 0}) end,
      "crt.process.exec: bad argument #2 (field 'timeout' must be a number > 0)")
    assert.has_error(function() process.exec({"ls"}, {stdin = 5}) end,
      "crt.process.exec: bad argument #2 (field 'stdin' must be a string)")
    assert.has_error(function() process.exec({"ls"}, {cwd = ""}) end,
      "crt.process.exec: bad argument #2 (field 'cwd' must be a non-empty string without NUL bytes)")
    assert.has_error(function() process.exec({"ls"}, {env = "x"}) end,
      "crt.process.exec: bad argument #2 (field 'env' must be a table)")
    assert.has_error(function() process.exec({"ls"}, {env = {["A=B"] = "x"}}) end,
      "crt.process.exec: bad argument #2 (field 'env': bad variable name (empty, or with '=' or NUL))")
    assert.has_error(function() process.exec({"ls"}, {env = {A = {}}}) end,
      "crt.process.exec: bad argument #2 (field 'env': value of 'A' must be a string, number or false)")
    assert.has_error(function() process.exec({"ls"}, {env = {A = "x\0y"}}) end,
      "crt.process.exec: bad argument #2 (field 'env': value contains a NUL byte)")
    assert.has_error(function() process.exec({"ls"}, {env = {[1] = "x"}}) end,
      "crt.process.exec: bad argument #2 (field 'env': names must be strings)")
  end)
end)

describe("crt.process.command", function()
  after_each(function() helper.assert_clean() end)

  it("streams stdin and stdout while the program runs", function()
    local p = assert(process.command({"sh", "-c",
      "while read l; do echo \"got $l\"; done; echo done >&2; exit 7"}))
    assert.is_true(math.type(p.pid) == "integer" and p.pid > 0)
    for i = 1, 3 do
      assert.is_true(p.stdin:write("line " .. i .. "\n"))
      assert.are.equal("got line " .. i, p.stdout:readline())
    end
    assert.is_true(p.stdin:close())
    assert.is_nil(p.stdout:read())
    assert.are.equal("done\n", p.stderr:read())
    assert.is_nil(p.stderr:read())
    assert.are.same({7, nil}, {p:wait()})
    assert.are.same({7, nil}, {p:wait()}) -- again: the same answer
    assert.matches("exited", tostring(p))
  end)

  it("streams large data both ways with back-pressure", function()
    local p = assert(process.command({"cat"}))
    local chunk = string.rep("c", 1 << 20)
    local writer = crt.spawn(function()
      for _ = 1, 32 do assert(p.stdin:write(chunk)) end
      p.stdin:close()
    end)
    local n = 0
    for data in function() return p.stdout:read() end do n = n + #data end
    writer:await()
    assert.are.equal(32 << 20, n)
    assert.are.equal(0, p:wait())
  end)

  it("kill sends signals by name or number, and fails once it exited", function()
    local p = assert(process.command({"sleep", "30"}))
    assert.is_true(p:kill(0)) -- is it running?
    assert.is_true(p:kill())
    assert.are.same({nil, "SIGTERM"}, {p:wait()})
    local ok, msg, code = p:kill()
    assert.is_nil(ok)
    assert.are.equal("ESRCH", code)
    assert.is_string(msg)
    p = assert(process.command({"sleep", "30"}))
    assert.is_true(p:kill("SIGKILL"))
    assert.are.same({nil, "SIGKILL"}, {p:wait()})
    p = assert(process.command({"sleep", "30"}))
    assert.is_true(p:kill(15))
    assert.are.same({nil, "SIGTERM"}, {p:wait()})
    p = assert(process.command({"sleep", "30"}))
    assert.is_true(p:kill("USR1"))
    assert.are.same({nil, "SIGUSR1"}, {p:wait()})
    assert.has_error(function() p:kill("SIGNOPE") end,
      "proc:kill: bad argument #1 (unknown signal 'SIGNOPE')")
    assert.has_error(function() p:kill({}) end,
      "proc:kill: bad argument #1 (signal name or number expected, got table)")
  end)

  it("stdio can be inherited or /dev/null instead of pipes", function()
    local p = assert(process.command({"sh", "-c", "cat; echo to-null; echo err-null >&2"},
      {stdin = "null", stdout = "null", stderr = "null"}))
    assert.is_nil(p.stdin)
    assert.is_nil(p.stdout)
    assert.is_nil(p.stderr)
    assert.are.equal(0, p:wait())
    p = assert(process.command({"true"}, {stdout = "inherit", stderr = "inherit",
      stdin = "inherit"}))
    assert.are.equal(0, p:wait())
    assert.has_error(function() process.command({"true"}, {stdout = "file"}) end,
      "crt.process.command: bad argument #2 (field 'stdout' must be \"pipe\", \"inherit\" or \"null\")")
  end)

  it("cwd and env work as for exec", function()
    local p = assert(process.command({"sh", "-c", "pwd; echo $CRT_X"},
      {cwd = "/", env = {CRT_X = "y"}}))
    assert.are.equal("/", p.stdout:readline())
    assert.are.equal("y", p.stdout:readline())
    assert.are.equal(0, p:wait())
  end)

  it("returns nil, message, code when the program cannot be started", function()
    check_fail("ENOENT", process.command({"no-such-program-crt"}))
    check_fail("ENOENT", process.command({"true"}, {cwd = "/no/such/dir"}))
    check_fail("EACCES", process.command({"/tmp"}))
  end)

  it("the pipes are read-only or write-only", function()
    local p = assert(process.command({"cat"}))
    assert.has_error(function() p.stdout:write("x") end, "stream:write: the stream is not writable")
    assert.has_error(function() p.stdin:read() end, "stream:read: the stream is not readable")
    p.stdin:close()
    assert.are.equal(0, p:wait())
  end)

  it("cancelling a task in wait() leaves the program running", function()
    local p = assert(process.command({"sleep", "30"}))
    local t = crt.spawn(function() return p:wait() end)
    crt.yield()
    t:cancel()
    assert.is_false(pcall(t.await, t))
    assert.is_true(p:kill(0))
    p:kill("SIGKILL")
    assert.are.same({nil, "SIGKILL"}, {p:wait()})
  end)

  it("a program still running when crt ends is terminated and reaped", function()
    local pidfile = tmpname("orphan")
    local script = ([[
      local p = crt.process.command({"sleep", "30"})
      local f = io.open(%q, "w") f:write(p.pid, "\n") f:close()
    ]]):format(pidfile)
    local r = assert(process.exec({helper.crt, "-e", script}, {timeout = 60}))
    assert.are.equal(0, r.code, r.stderr)
    local pid = wait_file(pidfile):match("%d+")
    assert.is_true(wait_gone(pid))
    assert(crt.fs.unlink(pidfile))
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() process.command(nil) end,
      "crt.process.command: bad argument #1 (table expected, got nil)")
    assert.has_error(function() process.command({"ls", true}) end,
      "crt.process.command: bad argument #1 (entry 2: string expected, got boolean)")
    assert.has_error(function() process.command({"ls"}, {stdin = 1}) end,
      "crt.process.command: bad argument #2 (field 'stdin' must be \"pipe\", \"inherit\" or \"null\")")
    local p = assert(process.command({"true"}))
    assert.has_error(function() p.wait(nil) end,
      "proc:wait: bad argument #1 (process expected, got nil)")
    p:wait()
  end)
end)
