-- Messages between a parent and a child: child:send/recv and
-- crt.parent:send/recv, in order under load, large messages split and
-- joined, 100 MiB in total, back-pressure (a fast sender waits and memory
-- stays bounded), the end of a link (recv returns nil), close().
-- Functions sent to children use the global `crt` (see process_spawn_spec).
local helper = require "tests.spec.helper"

-- A child that echoes every message until its parent closes the link.
local function echo()
  while true do
    local v = crt.parent:recv()
    if v == nil then return "closed" end
    crt.parent:send(v)
  end
end

describe("process messages", function()
  after_each(helper.assert_clean)

  it("go both ways, in order", function()
    local c = crt.process.spawn(echo)
    for i = 1, 100 do assert.is_true(c:send({ i = i, s = ("x"):rep(i) })) end
    for i = 1, 100 do
      local v = c:recv()
      assert.are.equal(i, v.i)
      assert.are.equal(i, #v.s)
    end
    c:close()
    assert.are.equal("closed", c:await())
  end)

  it("keep each sender's order when many tasks send at once", function()
    local c = crt.process.spawn(function()
      local last, n = {}, 0
      while true do
        local m = crt.parent:recv()
        if m == nil then break end
        assert(m[2] == (last[m[1]] or 0) + 1, "out of order")
        last[m[1]] = m[2]
        n = n + 1
      end
      return n, last
    end)
    local senders = {}
    for s = 1, 8 do
      senders[s] = crt.spawn(function()
        for i = 1, 2000 do
          c:send({ s, i })
          if i % 97 == 0 then crt.yield() end
        end
      end)
    end
    for s = 1, 8 do senders[s]:await() end
    c:close()
    local n, last = c:await()
    assert.are.equal(16000, n)
    for s = 1, 8 do assert.are.equal(2000, last[s]) end
  end)

  it("carry large messages, split into frames and joined", function()
    local c = crt.process.spawn(echo)
    for _, size in ipairs({ 1, 1024 * 1024 - 20, 1024 * 1024, 3 * 1024 * 1024 + 7, 20 * 1024 * 1024 }) do
      local s = ("0123456789abcdef"):rep(size // 16) .. ("z"):rep(size % 16)
      c:send(s)
      local back = c:recv()
      assert.are.equal(#s, #back)
      assert.is_true(back == s)
    end
    c:close()
    c:await()
  end)

  it("move 100 MiB in total", function()
    local c = crt.process.spawn(function()
      local n, bytes = 0, 0
      while true do
        local v = crt.parent:recv()
        if v == nil then break end
        n, bytes = n + 1, bytes + #v
        crt.parent:send(#v .. ":" .. v:sub(1, 8) .. v:sub(-8))
      end
      return n, bytes
    end)
    local mib = 1024 * 1024
    local receiver = crt.spawn(function()
      for i = 1, 100 do
        local r = c:recv()
        assert(r == mib .. ":" .. ("%08d"):format(i) .. ("%08d"):format(i), "bad echo " .. i)
      end
    end)
    for i = 1, 100 do
      local tag = ("%08d"):format(i)
      c:send(tag .. ("."):rep(mib - 16) .. tag)
    end
    receiver:await()
    c:close()
    local n, bytes = c:await()
    assert.are.equal(100, n)
    assert.are.equal(100 * mib, bytes)
  end)

  -- Back-pressure, counted in messages rather than RSS: the parent's RSS
  -- after freeing 1 MiB buffers depends on glibc's dynamic mmap threshold
  -- (freed memory may stay in the heap), which made an RSS bound flaky.
  it("make a fast sender wait for a slow receiver: what is queued stays bounded", function()
    local c = crt.process.spawn(function()
      local go = crt.channel(1)
      local h = crt.signal.on("SIGUSR1", function() go:try_send(true) end)
      crt.parent:send("ready")
      go:recv() -- reads nothing until told to
      h:stop()
      local n = 0
      while crt.parent:recv() do n = n + 1 end
      return n
    end)
    local chunk = ("m"):rep(1024 * 1024)
    local sent = 0
    local sender = crt.spawn(function()
      for _ = 1, 200 do
        c:send(chunk)
        sent = sent + 1
      end
      c:close()
    end)
    assert.are.equal("ready", c:recv())
    -- Give a sender without back-pressure time to run ahead. With it, the
    -- sender stops once the queues are full (the parent's 4 MiB write queue,
    -- the socket, the child's 8 MiB read queue: about 15 messages) whatever
    -- the timing, so this wait can only make a broken build pass, never a
    -- correct one fail.
    crt.sleep(0.2)
    assert.is_true(sent <= 24, "the sender ran ahead: " .. sent .. " MiB sent to a child that reads nothing")
    assert.is_true(c:kill("SIGUSR1"))
    sender:await()
    assert.are.equal(200, sent)
    assert.are.equal(200, c:await())
  end)

  it("make the child's sender wait for a slow parent", function()
    local c = crt.process.spawn(function()
      local chunk = ("c"):rep(1024 * 1024)
      local t0 = crt.now()
      for _ = 1, 64 do crt.parent:send(chunk) end
      return crt.now() - t0
    end)
    crt.sleep(0.5)
    for _ = 1, 64 do assert.are.equal(1024 * 1024, #c:recv()) end
    local took = c:await()
    assert.is_true(took > 0.3, "the child's sender never waited")
  end)

  it("returns nil from recv once the child is gone", function()
    local c = crt.process.spawn(function()
      crt.parent:send("last words")
      os.exit(0)
    end)
    assert.are.equal("last words", c:recv())
    assert.is_nil(c:recv())
    assert.is_nil(c:recv())
    pcall(c.await, c)
    assert.is_nil(c:recv())
  end)

  it("returns nil from recv for a child killed while the parent waits", function()
    local c = crt.process.spawn(function() crt.sleep(30) end)
    local r = crt.spawn(function() return c:recv() end)
    crt.sleep(0.05)
    c:kill("SIGKILL")
    assert.is_nil(r:await())
  end)

  it("keeps messages that came before the child ended", function()
    local c = crt.process.spawn(function()
      for i = 1, 3 do crt.parent:send(i) end
      return "done"
    end)
    assert.are.equal("done", c:await())
    assert.are.same({ 1, 2, 3 }, { c:recv(), c:recv(), c:recv() })
    assert.is_nil(c:recv())
  end)

  it("wake a sender waiting on a full pipe when the child dies", function()
    local c = crt.process.spawn(function() crt.sleep(0.3) os.exit(4) end)
    local chunk = ("z"):rep(1024 * 1024)
    local sent, err
    for i = 1, 200 do
      local ok, e = c:send(chunk)
      if not ok then
        sent, err = i - 1, e
        break
      end
    end
    assert.is_true(sent ~= nil and sent < 200, "every send succeeded")
    assert.matches("is gone", err)
    assert.matches("exited with code 4", select(2, pcall(c.await, c)))
  end)

  it("send to a dead child returns nil, message, code", function()
    local c = crt.process.spawn(function() return 1 end)
    c:await()
    local ok, err, code = c:send("anyone?")
    assert.is_nil(ok)
    assert.matches("child:send: child process " .. c.pid .. " is gone", err)
    assert.is_string(code)
  end)

  it("close() ends the child's recv after the messages already sent", function()
    local c = crt.process.spawn(function()
      local got = {}
      for v in function() return crt.parent:recv() end do got[#got + 1] = v end
      crt.parent:send("still talking")
      return got
    end)
    c:send("a")
    c:send("b")
    c:close()
    assert.has_error(function() c:send("c") end, "child:send: the link was closed with close()")
    assert.are.equal("still talking", c:recv())
    assert.are.same({ "a", "b" }, c:await())
  end)

  it("refuse what cannot cross, naming it", function()
    local c = crt.process.spawn(echo)
    assert.has_error(function() c:send({ f = io.stdout }) end, "child:send: cannot send value .f (userdata)")
    assert.has_error(function() c:send(nil) end, "child:send: bad argument #1 (value expected, got nil)")
    local ok, err = pcall(c.send, c, crt.channel())
    assert.is_false(ok)
    assert.matches("cannot send value %(channel", err)
    -- The link still works after a refused message.
    c:send("fine")
    assert.are.equal("fine", c:recv())
    c:close()
    c:await()
  end)

  it("carry functions with their upvalues", function()
    local c = crt.process.spawn(function()
      local f = crt.parent:recv()
      crt.parent:send(function() return f(20) + 1 end)
    end)
    local k = 2
    c:send(function(x) return x * k end)
    assert.are.equal(41, c:recv()())
    c:await()
  end)

  it("crt.parent:recv returns nil in the child when the parent closes", function()
    local c = crt.process.spawn(function()
      local v = crt.parent:recv()
      return v, crt.parent:recv()
    end)
    c:send(1)
    c:close()
    assert.are.same({ 1, nil }, { c:await() })
  end)
end)
