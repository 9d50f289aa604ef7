-- The crt command line: scripts and `arg`, -e, -, -i, -v, -h, --threads,
-- exit statuses, errors nobody awaited, deadlocks, crt.exit. Runs crt as a
-- program and checks what a user sees.
local helper = require "tests.spec.helper"
local q = helper.shell_quote

local function crt_run(args, stdin)
  local cmd = q(helper.crt) .. " " .. args
  if stdin then
    local f = os.tmpname()
    local h = io.open(f, "w")
    h:write(stdin)
    h:close()
    cmd = cmd .. " < " .. f
    local code, out, err = helper.run(cmd)
    os.remove(f)
    return code, out, err
  end
  return helper.run(cmd .. " </dev/null")
end

local function script(src)
  local path = os.tmpname() .. ".lua"
  local f = io.open(path, "w")
  f:write(src)
  f:close()
  return path
end

describe("crt command line", function()
  it("runs a script with arg set as lua does", function()
    local path = script [[
      print(arg[0], arg[1], arg[2], #arg, select("#", ...), ...)
    ]]
    local code, out = crt_run(q(path) .. " one 'two words'")
    os.remove(path)
    assert.are.equal(0, code)
    assert.are.equal(path .. "\tone\ttwo words\t2\t2\tone\ttwo words\n", out)
  end)

  it("runs the main chunk as a task: waiting works at top level", function()
    local code, out = crt_run("-e " .. q("crt.sleep(0.001) print(crt.spawn(function() return 5 end):await())"))
    assert.are.equal(0, code)
    assert.are.equal("5\n", out)
  end)

  it("runs -e chunks in order, before the script", function()
    local path = script "print('script', x)"
    local code, out = crt_run("-e 'x = 1' -e 'x = x + 1 print(\"e\", x)' " .. q(path))
    os.remove(path)
    assert.are.equal(0, code)
    assert.are.equal("e\t2\nscript\t2\n", out)
  end)

  it("reads the script from standard input with -", function()
    local code, out = crt_run("- a b", "crt.sleep(0.001) print('stdin', ...)")
    assert.are.equal(0, code)
    assert.are.equal("stdin\ta\tb\n", out)
  end)

  it("reads a piped script when given no arguments", function()
    local code, out = crt_run("", "print('piped')")
    assert.are.equal(0, code)
    assert.are.equal("piped\n", out)
  end)

  it("prints the versions of crt, Lua and libuv", function()
    local code, out = crt_run("-v")
    assert.are.equal(0, code)
    assert.matches("^crt %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libuv %d+%.%d+%.%d+%)\n$", out)
    local code2, out2 = crt_run("--version")
    assert.are.equal(0, code2)
    assert.are.equal(out, out2)
  end)

  it("prints usage with -h and rejects unknown options", function()
    local code, out = crt_run("-h")
    assert.are.equal(0, code)
    assert.matches("usage:", out)
    assert.matches("%-%-threads N", out)
    -- the environment variables, and where the documentation is
    assert.matches("Environment:", out)
    assert.matches("CRT_THREADS", out)
    assert.matches("CRT_EXE", out)
    assert.matches("LUA_PATH", out)
    assert.matches("docs/README%.md", out)
    local code2, _, err = crt_run("--bogus")
    assert.are.equal(2, code2)
    assert.matches("unrecognized option '%-%-bogus'", err)
    local code3, _, err3 = crt_run("-e")
    assert.are.equal(2, code3)
    assert.matches("'%-e' needs argument", err3)
  end)

  it("accepts --threads N (or CRT_THREADS) and rejects bad values", function()
    local code, out = crt_run("--threads 3 -e 'print(crt.thread.size())'")
    assert.are.equal(0, code)
    assert.are.equal("3\n", out)
    assert.are.equal("2\n", select(2, crt_run("--threads=2 -e 'print(crt.thread.size())'")))
    local env_code, env_out = helper.run("CRT_THREADS=5 " .. q(helper.crt) ..
      " -e 'print(crt.thread.size())' </dev/null")
    assert.are.equal(0, env_code)
    assert.are.equal("5\n", env_out)
    local bad_code, _, err = crt_run("--threads 0 -e 'print(1)'")
    assert.are.equal(2, bad_code)
    assert.matches("%-%-threads needs a whole number", err)
    assert.are.equal(2, (crt_run("--threads x -e 1")))
  end)

  it("runs an interactive prompt where tasks keep running", function()
    local input = table.concat({
      "n = 0",
      "crt.spawn(function() while true do crt.sleep(0.001) n = n + 1 end end)",
      "crt.sleep(0.02)",
      "print(n > 0)",
      "1 + 1",
      "error('oops')",
      "for i = 1, 2 do",
      "  print('loop', i)",
      "end",
    }, "\n") .. "\n"
    local code, out, err = crt_run("-i", input)
    assert.are.equal(0, code)
    assert.matches("^crt %d", out)
    assert.matches("true\n", out)
    assert.matches("\n?2\n", out)
    assert.matches("loop\t1\nloop\t2", out)
    assert.matches("oops", err)
  end)

  it("Ctrl-C at the prompt interrupts the running line, not the session", function()
    local proc = assert(crt.process.command({ helper.crt, "-i" }, { stderr = "pipe" }))
    proc.stdin:write("io.stdout:write('sleeping\\n') io.stdout:flush() crt.sleep(100)\n")
    local seen = ""
    while not seen:find("sleeping\n", 1, true) do
      local chunk = proc.stdout:read()
      assert(chunk, "crt -i ended early")
      seen = seen .. chunk
    end
    proc:kill("SIGINT") -- the line is running now: it is cancelled
    proc.stdin:write("print('after', 1 + 1)\n")
    proc.stdin:close()
    local rest = {}
    for chunk in function() return proc.stdout:read() end do rest[#rest + 1] = chunk end
    local errs = {}
    for chunk in function() return proc.stderr:read() end do errs[#errs + 1] = chunk end
    local code = proc:wait()
    assert.are.equal(0, code)
    assert.matches("after\t2", table.concat(rest))
    assert.matches("interrupted", table.concat(errs))
  end)

  it("exits 1 with a traceback on an error in the main chunk", function()
    local path = script [[
      local function deep() error("main failure") end
      deep()
    ]]
    local code, out, err = crt_run(q(path))
    os.remove(path)
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("main failure", err)
    assert.matches("stack traceback", err)
    assert.matches("in %a+ 'deep'", err)
    assert.matches("in main chunk", err) -- as lua says it
    assert.is_nil(err:find("prelude", 1, true)) -- crt's own frames are not shown
  end)

  it("reports a syntax error without running anything", function()
    local code, out, err = crt_run("-e 'print(1)' -e 'x ='")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.matches("unexpected symbol", err)
  end)

  it("reports a missing script", function()
    local code, _, err = crt_run("/nonexistent/script.lua")
    assert.are.equal(1, code)
    assert.matches("cannot open /nonexistent/script.lua", err)
  end)

  it("prints an error nobody awaited, keeps running, and exits 1", function()
    local code, out, err = crt_run("-e " .. q('crt.spawn(function() error("lost?") end) ' ..
      'crt.sleep(0.005) print("still running")'))
    assert.are.equal(1, code)
    assert.are.equal("still running\n", out)
    assert.matches("nobody awaited", err)
    assert.matches("lost%?", err)
    assert.matches("stack traceback", err)
  end)

  it("does not report an error that was awaited later", function()
    local code, _, err = crt_run("-e " .. q('t = crt.spawn(function() error("x") end) ' ..
      'crt.sleep(0.005) print(pcall(t.await, t))'))
    assert.are.equal(0, code)
    assert.are.equal("", err)
  end)

  it("does not report cancelled tasks nobody awaited", function()
    local code, _, err = crt_run([[-e 'local t = crt.spawn(crt.sleep, 10) crt.yield() t:cancel()']])
    assert.are.equal(0, code)
    assert.are.equal("", err)
  end)

  it("lives until every task and timer is done", function()
    local code, out = crt_run("-e " .. q('crt.spawn(function() crt.sleep(0.01) print("task") end) ' ..
      'crt.after(0.02, function() print("timer") end) print("main")'))
    assert.are.equal(0, code)
    assert.are.equal("main\ntask\ntimer\n", out)
  end)

  it("exits with crt.exit(code), cancelling what is left", function()
    local code, out = crt_run("-e " .. q('crt.spawn(function() local ok = pcall(crt.sleep, 10) ' ..
      'print("cleanup", ok) end) crt.sleep(0.001) crt.exit(7) print("not reached")'))
    assert.are.equal(7, code)
    assert.are.equal("cleanup\tfalse\n", out)
    assert.are.equal(0, (crt_run("-e 'crt.exit(true)'")))
    assert.are.equal(1, (crt_run("-e 'crt.exit(false)'")))
    assert.are.equal(0, (crt_run("-e 'crt.exit()'")))
  end)

  it("detects a deadlock instead of hanging", function()
    local code, _, err = crt_run([[-e 'local a = crt.channel(0) a:recv()']])
    assert.are.equal(1, code)
    assert.matches("deadlock", err)
  end)

  it("require 'crt' returns the global crt table", function()
    local code, out = crt_run([[-e 'print(require("crt") == crt)']])
    assert.are.equal(0, code)
    assert.are.equal("true\n", out)
  end)
end)
