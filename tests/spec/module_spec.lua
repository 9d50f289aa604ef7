-- Module mode: require "crt" from a stock lua5.4 through crt.so. Runs lua5.4
-- as a program with the build directory on package.cpath.
local helper = require "tests.spec.helper"
local q = helper.shell_quote

local function lua(src)
  local path = os.tmpname() .. ".lua"
  local f = io.open(path, "w")
  f:write("package.cpath = ", string.format("%q", helper.build_dir .. "/?.so;"),
    " .. package.cpath\n", src)
  f:close()
  local code, out, err = helper.run(helper.lua .. " " .. q(path) .. " </dev/null")
  os.remove(path)
  return code, out, err
end

describe("require 'crt' from lua5.4", function()
  it("crt.run runs the loop until fn's task is done and returns its results", function()
    local code, out, err = lua [[
      local crt = require "crt"
      print(crt.run(function(a)
        local t = crt.spawn(function() crt.sleep(0.001) return a * 2 end)
        return t:await(), "x"
      end, 21))
    ]]
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.are.equal("42\tx\n", out)
  end)

  it("returns the same table for every require", function()
    local code, out = lua [[
      print(require("crt") == require("crt"), package.loaded.crt == require("crt"))
    ]]
    assert.are.equal(0, code)
    assert.are.equal("true\ttrue\n", out)
  end)

  it("crt.run re-raises fn's error with its traceback", function()
    local code, out = lua [[
      local crt = require "crt"
      local ok, err = pcall(crt.run, function() error("module failure") end)
      print(ok, err:match("module failure") ~= nil, err:match("stack traceback") ~= nil)
    ]]
    assert.are.equal(0, code)
    assert.are.equal("false\ttrue\ttrue\n", out)
  end)

  it("waiting calls outside a task raise a clear error", function()
    local code, out = lua [[
      local crt = require "crt"
      print(select(2, pcall(crt.sleep, 1)))
      print(select(2, pcall(crt.yield)))
      local ch = crt.channel(0)
      print(select(2, pcall(ch.recv, ch)))
      print(select(2, pcall(ch.send, ch, 1)))
      local t = crt.spawn(function() end)
      print(select(2, pcall(t.await, t)))
      -- non-waiting calls work outside tasks
      local b = crt.channel(1)
      print(b:try_send(1), b.send == nil, b:recv())
    ]]
    assert.are.equal(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("^crt.sleep: must be called from a task", lines[1])
    assert.matches("^crt.yield: must be called from a task", lines[2])
    assert.matches("^channel:recv: channel is empty: must be called from a task", lines[3])
    assert.matches("^channel:send: channel is full: must be called from a task", lines[4])
    assert.matches("^task:await: must be called from a task", lines[5])
    assert.are.equal("true\tfalse\t1", lines[6])
  end)

  it("crt.run detects a deadlock", function()
    local code, out = lua [[
      local crt = require "crt"
      print(pcall(crt.run, function() crt.channel(0):recv() end))
    ]]
    assert.are.equal(0, code)
    assert.matches("^false\tcrt.run: deadlock", out)
  end)

  it("tasks spawned outside crt.run run when the loop runs", function()
    local code, out = lua [[
      local crt = require "crt"
      local t = crt.spawn(function() return "early" end)
      print(crt.run(function() return t:await() end))
    ]]
    assert.are.equal(0, code)
    assert.are.equal("early\n", out)
  end)

  it("crt.exit ends the process with the code", function()
    local code = lua [[
      local crt = require "crt"
      crt.run(function() crt.exit(5) end)
      print("not reached")
    ]]
    assert.are.equal(5, code)
  end)

  it("closes cleanly with tasks still pending at lua_close", function()
    local code, out, err = lua [[
      local crt = require "crt"
      crt.spawn(function() crt.sleep(100) end)
      crt.every(1, print)
      print("bye")
    ]]
    assert.are.equal(0, code)
    assert.are.equal("bye\n", out)
    assert.are.equal("", err)
  end)

  it("loads none of the crt command line's runner or prompt (they are cli/'s)", function()
    local code, out = lua [[
      require "crt"
      print(debug.getregistry()["crt.internal"])
    ]]
    assert.are.equal(0, code)
    assert.are.equal("nil\n", out)
    -- Nor does the library (crt.so, like every host's) embed cli/runner.lua.
    local f = assert(io.open(helper.build_dir .. "/crt.so", "rb"))
    local so = f:read("a")
    f:close()
    assert.truthy(so:find("-- prelude.lua - ", 1, true))
    assert.falsy(so:find("-- runner.lua - ", 1, true))
  end)
end)
