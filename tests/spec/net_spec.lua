-- crt.net: TCP streams, servers, UDP sockets and name resolution, plus
-- interoperation with programs nobody here wrote (nc, curl, python3).
local helper = require "tests.spec.helper"
local net = crt.net

local function check_fail(pattern, ok, msg, code)
  assert.is_nil(ok)
  assert.is_string(msg)
  assert.matches(pattern, code, 1, false)
end

local function open_fds() return #assert(crt.fs.readdir("/proc/self/fd")) end

-- Wait (boundedly) until the number of open descriptors is back to n: the
-- close callbacks of streams run at the next turns of the loop.
local function wait_fds(n)
  for _ = 1, 200 do
    if open_fds() <= n then return true end
    crt.sleep(0.005)
  end
  return open_fds() <= n
end

-- A connected pair of streams (client, server side).
local function pair()
  local server = assert(net.listen{host = "127.0.0.1", port = 0})
  local accepted = crt.spawn(function() return server:accept() end)
  local c = assert(net.connect("127.0.0.1", server.port))
  local s = assert(accepted:await())
  server:close()
  return c, s
end

local function have(prog)
  return crt.process.exec({"sh", "-c", "command -v " .. prog}).code == 0
end

local has_ipv6 = (function()
  local ok = crt.fs.read("/proc/net/if_inet6")
  return ok ~= nil and ok ~= ""
end)()

describe("crt.net", function()
  local base_fds
  setup(function()
    -- libuv keeps a spare descriptor once a first server listens: open it
    -- now, not inside a spec that counts descriptors.
    assert(net.listen{port = 0}):close()
  end)

  before_each(function()
    collectgarbage()
    base_fds = open_fds()
  end)

  after_each(function()
    collectgarbage()
    collectgarbage()
    assert.is_true(wait_fds(base_fds), "descriptors leaked")
    helper.assert_clean()
  end)

  describe("streams", function()
    it("connect, accept, read, write, peer and close", function()
      local server = assert(net.listen{port = 0})
      assert.is_true(server.port > 0)
      assert.are.equal("127.0.0.1", server.host) -- the default host
      local accepted = crt.spawn(function() return server:accept() end)
      local c = assert(net.connect("127.0.0.1", server.port))
      local s = assert(accepted:await())
      assert.are.equal("127.0.0.1:" .. server.port, c.peer)
      assert.matches("^127%.0%.0%.1:%d+$", s.peer)
      assert.is_true(c:write("ping"))
      assert.are.equal("ping", s:read())
      assert.is_true(s:write("pong"))
      assert.are.equal("po", c:read(2)) -- at most 2 bytes
      assert.are.equal("ng", c:read(100))
      assert.is_true(c:close())
      assert.is_true(c:close()) -- twice is harmless
      assert.is_nil(s:read()) -- end of stream
      assert.is_nil(s:read()) -- and it stays there
      assert.is_true(s:close())
      assert.is_true(server:close())
      assert.matches("^crt.stream: .*closed", tostring(c))
    end)

    it("readline strips \\n and \\r\\n and returns a last line without \\n", function()
      local c, s = pair()
      c:write("one\ntwo\r\n\nthree\r")
      c:write("\nfour")
      c:close()
      assert.are.equal("one", s:readline())
      assert.are.equal("two", s:readline())
      assert.are.equal("", s:readline())
      assert.are.equal("three", s:readline())
      assert.are.equal("four", s:readline())
      assert.is_nil(s:readline())
      s:close()
    end)

    it("readline waits for lines split across writes, and lines() iterates", function()
      local c, s = pair()
      local t = crt.spawn(function()
        local lines = {}
        for line in s:lines(1 << 20) do lines[#lines + 1] = line end -- above the default limit
        return lines
      end)
      c:write("hel")
      crt.sleep(0.001)
      c:write("lo\nwor")
      crt.sleep(0.001)
      c:write("ld\n")
      c:write(string.rep("x", 200000) .. "\n") -- longer than the read-ahead
      c:close()
      local lines = t:await()
      assert.are.equal(3, #lines)
      assert.are.equal("hello", lines[1])
      assert.are.equal("world", lines[2])
      assert.are.equal(200000, #lines[3])
      s:close()
    end)

    it("read_exactly waits for n bytes and returns nil when the stream ends first", function()
      local c, s = pair()
      c:write("abcdefgh")
      assert.are.equal("abc", s:read_exactly(3))
      assert.are.equal("", s:read_exactly(0))
      local t = crt.spawn(function() return s:read_exactly(10) end)
      crt.yield()
      c:write("ijkl")
      c:close() -- the peer closes mid-read
      assert.is_nil(t:await())
      -- The bytes that came are still there.
      assert.are.equal("defghijkl", s:read())
      assert.is_nil(s:read())
      s:close()
    end)

    it("moves a large amount of data with back-pressure on the writer", function()
      local c, s = pair()
      local chunk = string.rep("b", 1 << 20)
      local written = 0
      local writer = crt.spawn(function()
        for _ = 1, 64 do
          assert(c:write(chunk))
          written = written + 1
        end
        c:close()
      end)
      -- Nobody reads yet: the writer waits once the kernel buffers and the
      -- high-water mark are full, far from writing all 64 MiB.
      crt.sleep(0.2)
      assert.is_true(written < 40, "written: " .. written)
      assert.is_false(writer:done())
      local n = 0
      while true do
        local data = s:read()
        if not data then break end
        n = n + #data
      end
      writer:await()
      assert.are.equal(64 << 20, n)
      s:close()
    end)

    it("cancelling a task blocked in read leaves the stream usable", function()
      local c, s = pair()
      local baseline = crt.stats().tasks
      local t = crt.spawn(function() return s:read() end)
      crt.yield()
      assert.are.equal(baseline + 1, crt.stats().tasks)
      t:cancel()
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.are.equal(crt.Cancelled, err)
      assert.are.equal(baseline, crt.stats().tasks)
      for _, fn in ipairs{function() return s:readline() end,
                          function() return s:read_exactly(5) end} do
        local t2 = crt.spawn(fn)
        crt.yield()
        t2:cancel()
        assert.is_false(pcall(t2.await, t2))
      end
      assert.are.equal(baseline, crt.stats().tasks)
      c:write("still here\n")
      assert.are.equal("still here", s:readline())
      c:close()
      s:close()
    end)

    it("crt.timeout around a read cancels it", function()
      local c, s = pair()
      assert.are.same({nil, "timeout"}, {crt.timeout(0.01, s.read, s)})
      c:write("late")
      assert.are.equal("late", s:read())
      c:close()
      s:close()
    end)

    it("a close by another task ends a waiting read with nil", function()
      local c, s = pair()
      local t = crt.spawn(function() return s:read() end)
      crt.yield()
      s:close()
      assert.is_nil(t:await())
      c:close()
    end)

    it("one reader at a time", function()
      local c, s = pair()
      local t = crt.spawn(function() return s:read() end)
      crt.yield()
      assert.has_error(function() s:read() end,
        "stream:read: another task is already reading this stream")
      c:write("x")
      assert.are.equal("x", t:await())
      c:close()
      s:close()
    end)

    it("writing to a stream the peer closed fails with nil, message, code", function()
      local c, s = pair()
      s:close()
      assert.is_nil(c:read())
      local ok, msg, code
      for _ = 1, 100 do -- the first writes may still be accepted by the kernel
        ok, msg, code = c:write(string.rep("x", 65536))
        if not ok then break end
        crt.sleep(0.001)
      end
      assert.is_nil(ok)
      assert.is_string(msg)
      assert.is_truthy(code == "EPIPE" or code == "ECONNRESET", code)
      c:close()
    end)

    it("raises on a stream closed here and on bad arguments", function()
      local c, s = pair()
      assert.has_error(function() c:write(42) end,
        "stream:write: bad argument #1 (string expected, got number)")
      assert.has_error(function() c:write() end,
        "stream:write: bad argument #1 (string expected, got no value)")
      assert.has_error(function() c:read_exactly(-1) end,
        "stream:read_exactly: bad argument #1 (negative count)")
      assert.has_error(function() c:read_exactly(1 << 40) end,
        "stream:read_exactly: bad argument #1 (count too large (at most 1 GiB))")
      assert.has_error(function() c:read_exactly("x") end,
        "stream:read_exactly: bad argument #1 (integer expected, got string)")
      assert.has_error(function() c:read(0) end,
        "stream:read: bad argument #1 (count must be positive)")
      assert.has_error(function() c:read("a") end,
        "stream:read: bad argument #1 (integer expected, got string)")
      assert.has_error(function() c.read(s == c) end,
        "stream:read: bad argument #1 (stream expected, got boolean)")
      c:close()
      assert.has_error(function() c:write("x") end, "stream:write: the stream is closed")
      assert.has_error(function() c:read() end, "stream:read: the stream is closed")
      assert.has_error(function() c:readline() end, "stream:readline: the stream is closed")
      s:close()
    end)

    it("shutdown sends the end of stream and keeps the read side", function()
      local c, s = pair()
      c:write("request")
      assert.is_true(c:shutdown())
      assert.is_true(c:shutdown())
      assert.has_error(function() c:write("x") end,
        "stream:write: the stream was shut down for writing")
      assert.are.equal("request", s:read())
      assert.is_nil(s:read())
      s:write("response")
      s:close()
      assert.are.equal("response", c:read())
      assert.is_nil(c:read())
      c:close()
    end)

    it("closes streams on garbage collection and with <close>", function()
      local server = assert(net.listen{port = 0})
      do
        local c <close> = assert(net.connect("127.0.0.1", server.port)) -- luacheck: ignore
        assert.is_true(open_fds() > base_fds)
      end
      do
        local c = assert(net.connect("127.0.0.1", server.port)) -- luacheck: ignore
      end
      collectgarbage()
      collectgarbage()
      server:close()
      -- after_each checks that every descriptor is closed
    end)

    it("works over IPv6", function()
      if not has_ipv6 then return end
      local server = assert(net.listen{host = "::1", port = 0})
      assert.are.equal("::1", server.host)
      local accepted = crt.spawn(function() return server:accept() end)
      local c = assert(net.connect("::1", server.port))
      local s = assert(accepted:await())
      assert.are.equal("[::1]:" .. server.port, c.peer)
      c:write("six\n")
      assert.are.equal("six", s:readline())
      c:close()
      s:close()
      server:close()
    end)
  end)

  describe("connect", function()
    it("fails with ECONNREFUSED on a port that was just closed", function()
      local server = assert(net.listen{port = 0})
      local port = server.port
      server:close()
      local ok, msg, code = net.connect("127.0.0.1", port)
      check_fail("^ECONNREFUSED$", ok, msg, code)
      assert.matches("127.0.0.1:" .. port .. ": connection refused", msg, 1, true)
    end)

    it("resolves host names and fails on unknown ones", function()
      local server = assert(net.listen{port = 0})
      local accepted = crt.spawn(function() return server:accept() end)
      local c = assert(net.connect("localhost", server.port))
      local s = assert(accepted:await())
      c:close()
      s:close()
      server:close()
      check_fail("^EAI_", net.connect("no-such-host.invalid", 80))
    end)

    it("can be cancelled while connecting or resolving", function()
      -- An unroutable address: the connection attempt hangs (or, without a
      -- route at all, fails at once: then there is nothing left to cancel).
      local t = crt.spawn(function() return net.connect("10.255.255.1", 9) end)
      crt.yield()
      t:cancel()
      local ok, res = pcall(t.await, t)
      assert.is_true(not ok and res == crt.Cancelled or ok and res == nil)
      local t2 = crt.spawn(function() return net.connect("no-such-host.invalid", 80) end)
      crt.yield()
      t2:cancel()
      assert.is_false(pcall(t2.await, t2))
    end)

    it("rejects bad arguments", function()
      assert.has_error(function() net.connect(nil, 80) end,
        "crt.net.connect: bad argument #1 (string expected, got nil)")
      assert.has_error(function() net.connect("", 80) end,
        "crt.net.connect: bad argument #1 (empty string)")
      assert.has_error(function() net.connect("local\0host", 80) end,
        "crt.net.connect: bad argument #1 (string contains a NUL byte)")
      assert.has_error(function() net.connect("127.0.0.1", 0) end,
        "crt.net.connect: bad argument #2 (port out of range (1-65535))")
      assert.has_error(function() net.connect("127.0.0.1", 65536) end,
        "crt.net.connect: bad argument #2 (port out of range (1-65535))")
      assert.has_error(function() net.connect("127.0.0.1", "http") end,
        "crt.net.connect: bad argument #2 (integer expected, got string)")
      assert.has_error(function() net.connect("127.0.0.1", 80.5) end,
        "crt.net.connect: bad argument #2 (integer expected, got number)")
    end)
  end)

  describe("servers", function()
    it("accept returns nil once the server is closed, also to a waiting task", function()
      local server = assert(net.listen{port = 0})
      local t = crt.spawn(function() return server:accept() end)
      crt.yield()
      server:close()
      assert.is_nil(t:await())
      assert.is_nil(server:accept())
      assert.is_nil(server.port)
    end)

    it("accepts connections that came before accept was called", function()
      local server = assert(net.listen{port = 0, backlog = 8})
      local c1 = assert(net.connect("127.0.0.1", server.port))
      local c2 = assert(net.connect("127.0.0.1", server.port))
      local s1 = assert(server:accept())
      local s2 = assert(server:accept())
      c1:write("1")
      c2:write("2")
      assert.are.equal("1", s1:read())
      assert.are.equal("2", s2:read())
      for _, x in ipairs{c1, c2, s1, s2, server} do x:close() end
    end)

    it("fails with EADDRINUSE on a port in use", function()
      local server = assert(net.listen{port = 0})
      local ok, msg, code = net.listen{port = server.port}
      check_fail("^EADDRINUSE$", ok, msg, code)
      server:close()
    end)

    it("serve runs a task per connection and closes the stream when it returns", function()
      local seen = crt.channel()
      local server = assert(net.serve({port = 0}, function(s)
        local line = s:readline()
        s:write(line:upper() .. "\n")
        seen:send(line)
      end))
      local clients = {}
      for i = 1, 20 do
        clients[i] = crt.spawn(function()
          local c = assert(net.connect("127.0.0.1", server.port))
          c:write("client " .. i .. "\n")
          local back = c:readline()
          local after = c:read() -- the server closed its side
          c:close()
          return back, after
        end)
      end
      for i = 1, 20 do
        local back, after = clients[i]:await()
        assert.are.equal("CLIENT " .. i, back)
        assert.is_nil(after)
      end
      local got = {}
      for _ = 1, 20 do got[#got + 1] = seen:recv() end
      assert.are.equal(20, #got)
      assert.has_error(function() server:accept() end,
        "server:accept: this server hands its connections to its handler (serve)")
      server:close()
    end)

    it("a channel fed by serve() handlers is not a deadlock", function()
      local got = crt.channel()
      local server = assert(net.serve({port = 0}, function(s) got:send(s:readline()) end))
      crt.spawn(function()
        local c = assert(net.connect("127.0.0.1", server.port))
        c:write("hi\n")
        c:close()
      end)
      assert.are.equal("hi", got:recv())
      server:close()
    end)

    it("rejects bad arguments", function()
      assert.has_error(function() net.listen("x") end,
        "crt.net.listen: bad argument #1 (table expected, got string)")
      assert.has_error(function() net.listen{port = -1} end,
        "crt.net.listen: bad argument #1 (field 'port' out of range (0-65535))")
      assert.has_error(function() net.listen{port = "80"} end,
        "crt.net.listen: bad argument #1 (field 'port': integer expected, got string)")
      assert.has_error(function() net.listen{host = 1} end,
        "crt.net.listen: bad argument #1 (field 'host': string expected, got number)")
      assert.has_error(function() net.listen{backlog = 0} end,
        "crt.net.listen: bad argument #1 (field 'backlog' out of range (1-65535))")
      assert.has_error(function() net.serve({port = 0}) end,
        "crt.net.serve: bad argument #2 (function expected, got no value)")
      check_fail("^EAI_", net.listen{host = "no-such-host.invalid"})
      check_fail("^EADDRNOTAVAIL$", net.listen{host = "192.0.2.1"}) -- not ours
    end)
  end)

  describe("udp", function()
    it("sends and receives datagrams with the sender's address", function()
      local a = assert(net.udp{host = "127.0.0.1", port = 0})
      local b = assert(net.udp{})
      assert.is_true(a.port > 0)
      assert.are.equal("127.0.0.1", a.host)
      assert.is_nil(b.port) -- not bound until the first send
      assert.is_nil(b.host)
      assert.is_true(b:send("ping", "127.0.0.1", a.port))
      assert.is_true(b.port > 0)
      local data, host, port = a:recv()
      assert.are.equal("ping", data)
      assert.are.equal("127.0.0.1", host)
      assert.are.equal(b.port, port)
      assert.is_true(a:send("", host, port)) -- empty datagrams exist
      assert.are.same({"", "127.0.0.1", a.port}, {b:recv()})
      assert.is_true(b:send("via name", "localhost", a.port))
      assert.are.equal("via name", (a:recv()))
      assert.is_true(a:close())
      assert.is_true(a:close())
      assert.has_error(function() a:recv() end, "socket:recv: the socket is closed")
      b:close()
    end)

    it("a waiting recv can be cancelled, or ends with nil on close", function()
      local a = assert(net.udp{port = 0})
      local t = crt.spawn(function() return a:recv() end)
      crt.yield()
      t:cancel()
      assert.is_false(pcall(t.await, t))
      local t2 = crt.spawn(function() return a:recv() end)
      crt.yield()
      a:close()
      assert.is_nil(t2:await())
    end)

    it("works over IPv6", function()
      if not has_ipv6 then return end
      local a = assert(net.udp{host = "::1", port = 0})
      local b = assert(net.udp{host = "::1", port = 0})
      assert.is_true(b:send("v6", "::1", a.port))
      assert.are.same({"v6", "::1", b.port}, {a:recv()})
      a:close()
      b:close()
    end)

    it("reports failures and rejects bad arguments", function()
      local a = assert(net.udp{port = 0})
      assert.has_error(function() a:send(1, "127.0.0.1", 9) end,
        "socket:send: bad argument #1 (string expected, got number)")
      assert.has_error(function() a:send("x", "127.0.0.1", 0) end,
        "socket:send: bad argument #3 (port out of range (1-65535))")
      assert.has_error(function() a:send("x", "", 9) end,
        "socket:send: bad argument #2 (empty string)")
      assert.has_error(function() a:send(string.rep("x", 70000), "127.0.0.1", 9) end,
        "socket:send: bad argument #1 (datagram too large (at most 65535 bytes))")
      check_fail("^EAI_", a:send("x", "no-such-host.invalid", 9))
      a:close()
      local b = assert(net.udp{port = 0})
      check_fail("^EADDRINUSE$", net.udp{port = b.port})
      b:close()
      assert.has_error(function() net.udp{port = 70000} end,
        "crt.net.udp: bad argument #1 (field 'port' out of range (0-65535))")
    end)
  end)

  describe("resolve", function()
    it("returns the addresses of a name, and numeric addresses as they are", function()
      local addrs = assert(net.resolve("localhost"))
      local found = false
      for _, a in ipairs(addrs) do found = found or a == "127.0.0.1" or a == "::1" end
      assert.is_true(found)
      assert.are.same({"127.0.0.1"}, net.resolve("127.0.0.1"))
      assert.are.same({"::1"}, net.resolve("::1"))
      check_fail("^EAI_", net.resolve("no-such-host.invalid"))
      assert.has_error(function() net.resolve(5) end,
        "crt.net.resolve: bad argument #1 (string expected, got number)")
    end)
  end)

  describe("with other programs", function()
    it("nc talks to a crt server", function()
      assert.is_true(have("nc"), "nc (netcat-openbsd) is needed")
      local server = assert(net.serve({port = 0}, function(s)
        for line in s:lines() do s:write("echo: " .. line .. "\n") end
      end))
      local r = assert(crt.process.exec({"nc", "-N", "127.0.0.1", tostring(server.port)},
        {stdin = "one\ntwo\n", timeout = 20}))
      assert.are.equal("echo: one\necho: two\n", r.stdout)
      server:close()
    end)

    it("crt talks to an nc server", function()
      assert.is_true(have("nc"), "nc (netcat-openbsd) is needed")
      -- Find a free port, then let nc listen on it (retrying if taken).
      for _ = 1, 5 do
        local probe = assert(net.listen{port = 0})
        local port = probe.port
        probe:close()
        local nc = assert(crt.process.command({"nc", "-l", "127.0.0.1", tostring(port)},
          {stderr = "null"}))
        local c
        for _ = 1, 200 do
          c = net.connect("127.0.0.1", port)
          if c or not nc:kill(0) then break end
          crt.sleep(0.01)
        end
        if c then
          nc.stdin:write("from nc\n")
          assert.are.equal("from nc", c:readline())
          c:write("from crt\n")
          assert.are.equal("from crt", nc.stdout:readline())
          c:close()
          nc.stdin:close()
          nc:wait()
          return
        end
        nc:wait()
      end
      error("nc did not listen")
    end)

    it("socat relays to a crt server", function()
      assert.is_true(have("socat"), "socat is needed")
      local server = assert(net.serve({port = 0}, function(s)
        s:write((s:read_exactly(5) or "?"):reverse())
      end))
      local r = assert(crt.process.exec({"socat", "-", "TCP:127.0.0.1:" .. server.port},
        {stdin = "hello", timeout = 20}))
      assert.are.equal("olleh", r.stdout)
      server:close()
    end)

    it("curl gets a page from a crt HTTP server", function()
      assert.is_true(have("curl"), "curl is needed")
      local server = assert(net.serve({port = 0}, function(s)
        local request = s:readline()
        for line in s:lines() do if line == "" then break end end
        local body = "you asked for " .. request:match("^GET (%S+)")
        s:write(("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" ..
          "Connection: close\r\n\r\n%s"):format(#body, body))
      end))
      local r = assert(crt.process.exec({"curl", "-sS", "--max-time", "20",
        ("http://127.0.0.1:%d/some/page"):format(server.port)}))
      assert.are.equal("", r.stderr)
      assert.are.equal(0, r.code)
      assert.are.equal("you asked for /some/page", r.stdout)
      server:close()
    end)

    it("crt gets a page from python3 -m http.server", function()
      local dir = ("/tmp/crt-net-spec-%d-%d"):format(os.time(), math.random(1e9))
      assert(crt.fs.mkdir(dir))
      assert(crt.fs.write(dir .. "/hello.txt", "hello from python\n"))
      local py = assert(crt.process.command({"python3", "-u", "-m", "http.server", "0",
        "--bind", "127.0.0.1", "--directory", dir}, {stderr = "null"}))
      local port = tonumber(py.stdout:readline():match(" port (%d+)"))
      local c = assert(net.connect("127.0.0.1", port))
      c:write("GET /hello.txt HTTP/1.0\r\n\r\n")
      assert.matches("^HTTP/1%.%d 200", c:readline())
      local len
      for line in c:lines() do
        if line == "" then break end
        len = len or tonumber(line:match("^Content%-Length: (%d+)"))
      end
      assert.are.equal(18, len)
      assert.are.equal("hello from python\n", c:read_exactly(len))
      c:close()
      py:kill()
      py:wait()
      assert(crt.fs.unlink(dir .. "/hello.txt"))
      assert(crt.fs.rmdir(dir))
    end)
  end)
end)
