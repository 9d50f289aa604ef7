-- W7 for luv under lua5.4: an echo server and its clients in one process,
-- each client a coroutine suspended on its socket and resumed from luv's
-- callbacks, as a luv user writes it.
--   lua5.4 lua_luv.lua rtt [clients] [rounds]  -> RESULT rtt_per_sec=<n>
--   lua5.4 lua_luv.lua bulk [MiB]              -> RESULT mib_per_sec=<n>
local uv = require "luv"
local mode = arg[1] or "rtt"

local function fail(msg)
  io.stderr:write("w7 luv: ", msg, "\n")
  os.exit(1)
end

local function resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then fail(debug.traceback(co, err)) end
end

-- A buffered reader: read_exactly(n) suspends the coroutine until n bytes came.
local function reader(sock)
  local buf, want, co = "", 0, nil
  sock:read_start(function(err, data)
    if err or not data then
      if co then local c = co; co = nil; resume(c, nil) end
      return
    end
    buf = buf .. data
    if co and #buf >= want then
      local out = buf:sub(1, want)
      buf = buf:sub(want + 1)
      local c = co
      co = nil
      resume(c, out)
    end
  end)
  return function(n)
    if #buf >= n then
      local out = buf:sub(1, n)
      buf = buf:sub(n + 1)
      return out
    end
    want, co = n, coroutine.running()
    return coroutine.yield()
  end
end

local function listen(on_conn)
  local server = uv.new_tcp()
  server:bind("127.0.0.1", 0)
  server:listen(511, function(err)
    assert(not err, err)
    local c = uv.new_tcp()
    server:accept(c)
    on_conn(c)
  end)
  return server, server:getsockname().port
end

local function connect(port)
  local co = coroutine.running()
  local c = uv.new_tcp()
  c:nodelay(true)
  c:connect("127.0.0.1", port, function(err) resume(co, err) end)
  local err = coroutine.yield()
  assert(not err, err)
  return c
end

if mode == "rtt" then
  local clients = math.tointeger(tonumber(arg[2] or "100"))
  local rounds = math.tointeger(tonumber(arg[3] or "1000"))
  local server, port = listen(function(c)
    c:nodelay(true)
    c:read_start(function(err, data)
      if err or not data then c:close() return end
      c:write(data)
    end)
  end)
  local msg = string.rep("x", 64)
  local total, finished = 0, 0
  local t0 = uv.hrtime()
  for _ = 1, clients do
    resume(coroutine.create(function()
      local c = connect(port)
      local read = reader(c)
      for _ = 1, rounds do
        c:write(msg)
        if read(64) ~= msg then fail("bad echo") end
      end
      c:close()
      total = total + rounds
      finished = finished + 1
      if finished == clients then server:close() end
    end))
  end
  uv.run()
  local dt = (uv.hrtime() - t0) / 1e9
  if total ~= clients * rounds then fail("counted " .. total) end
  print(string.format("RESULT rtt_per_sec=%.0f", total / dt))
elseif mode == "bulk" then
  local mib = math.tointeger(tonumber(arg[2] or "1024"))
  local n = 0
  local server
  server = listen(function(c)
    c:read_start(function(err, data)
      if err or not data then c:close() server:close() return end
      n = n + #data
    end)
  end)
  local port = server:getsockname().port
  local chunk = string.rep("y", 1024 * 1024)
  local t0 = uv.hrtime()
  resume(coroutine.create(function()
    local c = connect(port)
    local co = coroutine.running()
    for _ = 1, mib do
      c:write(chunk)
      if c:get_write_queue_size() > 1024 * 1024 then
        c:write("", function() resume(co) end) -- wait for the queue to drain
        coroutine.yield()
      end
    end
    c:shutdown(function() c:close() end)
  end))
  uv.run()
  local dt = (uv.hrtime() - t0) / 1e9
  if n ~= mib * 1024 * 1024 then fail("received " .. n) end
  print(string.format("RESULT mib_per_sec=%.1f", mib / dt))
else
  fail("unknown mode " .. tostring(mode))
end
