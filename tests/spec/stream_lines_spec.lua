-- stream:readline / stream:lines line limit (issue 15): a default of 65,536
-- bytes, a per-call max, the nil, message, "EMSGSIZE" failure that leaves
-- the bytes buffered, and a peer sending a huge line that does not grow the
-- receiver's buffer past the limit (stream.buffered counts it).
local helper = require "tests.spec.helper"
local net = crt.net

local KiB = 1024
local MiB = 1024 * KiB

-- A connected pair of streams (client, server side).
local function pair()
  local server = assert(net.listen{host = "127.0.0.1", port = 0})
  local accepted = crt.spawn(function() return server:accept() end)
  local c = assert(net.connect("127.0.0.1", server.port))
  local s = assert(accepted:await())
  server:close()
  return c, s
end

describe("stream line limit", function()
  after_each(function()
    collectgarbage()
    helper.assert_clean()
  end)

  it("the default limit is 65,536 bytes: exactly passes, one more fails", function()
    local c, s = pair()
    local exact = string.rep("a", 65536)
    c:write(exact .. "\n" .. string.rep("c", 65536) .. "\r\n" ..
            string.rep("b", 65537) .. "\nafter\n")
    assert.are.equal(exact, s:readline())
    assert.are.equal(string.rep("c", 65536), s:readline()) -- "\r\n" is not counted
    assert.are.same({nil, "stream:readline: line longer than 65536 bytes", "EMSGSIZE"},
                    {s:readline()})
    -- Nothing was consumed: the error repeats and the bytes are still there.
    assert.is_true(s.buffered >= 65537)
    assert.are.same({nil, "stream:readline: line longer than 65536 bytes", "EMSGSIZE"},
                    {s:readline()})
    assert.are.equal(string.rep("b", 65537) .. "\n", s:read_exactly(65538))
    assert.are.equal("after", s:readline())
    assert.are.equal(0, s.buffered)
    c:close()
    assert.is_nil(s:readline())
    s:close()
    assert.is_nil(s.buffered)
  end)

  it("readline(max) and lines(max) change the limit for that call", function()
    local c, s = pair()
    c:write("0123456789\n0123456789A\n" .. string.rep("x", 100000) .. "\nend\n")
    assert.are.equal("0123456789", s:readline(10))
    assert.are.same({nil, "stream:readline: line longer than 10 bytes", "EMSGSIZE"},
                    {s:readline(10)})
    assert.are.equal("0123456789A", s:readline(11))
    assert.are.equal(100000, #s:readline(100000))
    assert.are.equal("end", s:readline(3))
    c:write("ab\nabc\nabcd\nlast\n")
    local got = {}
    local ok, err = pcall(function()
      for line in s:lines(3) do got[#got + 1] = line end
    end)
    assert.is_false(ok)
    assert.are.equal("stream:lines: line longer than 3 bytes", err)
    assert.are.same({"ab", "abc"}, got)
    -- The long line is still buffered; a larger limit reads it.
    got = {}
    c:close()
    for line in s:lines(4) do got[#got + 1] = line end
    assert.are.same({"abcd", "last"}, got)
    s:close()
  end)

  it("a last line without \\n longer than the limit fails and stays readable", function()
    local c, s = pair()
    c:write("abcdef")
    c:close()
    assert.are.same({nil, "stream:readline: line longer than 5 bytes", "EMSGSIZE"},
                    {s:readline(5)})
    assert.are.equal("abcdef", s:read())
    assert.is_nil(s:readline(5))
    s:close()
  end)

  it("raises on a bad limit", function()
    local c, s = pair()
    c:write("x\ny\n") -- (so that a limit ignored by mistake does not block)
    for _, case in ipairs{
      {0, "line limit must be positive"},
      {-1, "line limit must be positive"},
      {"10", "integer expected, got string"},
      {1.5, "integer expected, got number"},
      {true, "integer expected, got boolean"},
      {(1 << 30) + 1, "line limit too large (at most 1 GiB)"},
    } do
      local v, msg = case[1], case[2]
      assert.has_error(function() s:readline(v) end, "stream:readline: bad argument #1 (" .. msg .. ")")
      assert.has_error(function() s:lines(v) end, "stream:lines: bad argument #1 (" .. msg .. ")")
    end
    -- nil is the default
    assert.are.equal("x", s:readline(nil))
    assert.are.equal("y", s:lines(nil)())
    c:close()
    s:close()
    assert.has_error(function() s:lines() end, "stream:lines: the stream is closed")
  end)

  it("a peer sending a 64 MiB line does not grow the receiver's buffer", function()
    local c, s = pair()
    local chunk = string.rep("z", MiB)
    local writer = crt.spawn(function()
      for _ = 1, 64 do
        if not c:write(chunk) then return false end
      end
      return c:write("\ntail\n") and true
    end)
    -- The bound: the limit plus what a few reads of the loop bring (64 KiB
    -- each) and the 256 KiB read-ahead, far below the 64 MiB sent.
    local bound = MiB
    local line, msg, code = s:readline()
    assert.is_nil(line)
    assert.are.equal("stream:readline: line longer than 65536 bytes", msg)
    assert.are.equal("EMSGSIZE", code)
    assert.is_true(s.buffered > 65536 and s.buffered <= bound, "buffered: " .. s.buffered)
    -- While nobody reads, the peer is held back by TCP, not by memory.
    for _ = 1, 20 do
      crt.sleep(0.001)
      assert.is_true(s.buffered <= bound, "buffered: " .. s.buffered)
    end
    assert.is_false(writer:done())
    assert.has_error(function()
      for _ in s:lines() do end
    end, "stream:lines: line longer than 65536 bytes")
    -- Skip the long line with read(): the stream stays usable.
    local skipped = 0
    while skipped < 64 * MiB + 1 do
      local data = assert(s:read(64 * MiB + 1 - skipped))
      skipped = skipped + #data
      assert.is_true(s.buffered <= bound, "buffered: " .. s.buffered)
    end
    assert.are.equal("tail", s:readline())
    assert.is_true(writer:await())
    c:close()
    assert.is_nil(s:readline())
    assert.is_true(s:close())
  end)
end)
