-- The I/O examples run to completion by themselves, exit 0 and print what
-- their comments promise. They run as separate crt processes.
local helper = require "tests.spec.helper"

local function example(name, ...)
  local argv = {helper.crt, helper.source_dir .. "/examples/" .. name, ...}
  return assert(crt.process.exec(argv, {timeout = 120}))
end

describe("I/O examples", function()
  after_each(function() helper.assert_clean() end)

  it("echo_server.lua: serves lines and stops on request (demo mode)", function()
    local r = example("echo_server.lua")
    assert.are.equal("", r.stderr)
    assert.are.equal(0, r.code)
    assert.matches("^listening on 127%.0%.0%.1:%d+\n", r.stdout)
    assert.matches('sent "hello", got "hello"', r.stdout, 1, true)
    assert.matches("server says bye", r.stdout, 1, true)
    assert.matches("stopped (a client asked) after 1 connection(s)", r.stdout, 1, true)
  end)

  it("echo_server.lua: stops on SIGTERM", function()
    local p = assert(crt.process.command({helper.crt, helper.source_dir ..
      "/examples/echo_server.lua", "0"}))
    local port = tonumber(p.stdout:readline():match(":(%d+)$"))
    local c = assert(crt.net.connect("127.0.0.1", port))
    c:write("over the wire\n")
    assert.are.equal("over the wire", c:readline())
    c:close()
    p:kill("SIGTERM")
    assert.matches("stopped %(SIGTERM%) after 1 connection", p.stdout:readline())
    assert.are.equal(0, p:wait())
  end)

  it("echo_clients.lua: 1,000 concurrent connections", function()
    local r = example("echo_clients.lua")
    assert.are.equal("", r.stderr)
    assert.are.equal(0, r.code)
    local n, lines = r.stdout:match("(%d+) clients, (%d+) lines echoed")
    assert.is_truthy(n, r.stdout)
    assert.are.equal(tonumber(n) * 20, tonumber(lines))
    if not r.stdout:match("^note: ulimit") then assert.are.equal("1000", n) end
    assert.matches("server: stopped %(a client asked%) after " .. (tonumber(n) + 1) ..
      " connection", r.stdout)
  end)

  it("http_fetch.lua: concurrent GETs from python3 -m http.server", function()
    local r = example("http_fetch.lua")
    assert.are.equal("", r.stderr)
    assert.are.equal(0, r.code)
    assert.matches("python3 http.server on port %d+", r.stdout)
    assert.matches("40 GETs by 4 concurrent clients, %d+ bytes, all bodies match", r.stdout)
    assert.matches("GET /no-such-file: 404", r.stdout, 1, true)
    assert.matches("server stopped: SIGTERM", r.stdout, 1, true)
  end)

  it("log_pipeline.lua: tail -F into sort | uniq -c", function()
    local r = example("log_pipeline.lua")
    assert.are.equal("", r.stderr)
    assert.are.equal(0, r.code)
    assert.matches("followed 300 lines", r.stdout, 1, true)
    assert.matches("summary checked", r.stdout, 1, true)
  end)
end)
