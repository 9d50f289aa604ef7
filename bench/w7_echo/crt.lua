-- W7 for crt: an echo server and its clients in one process, on 127.0.0.1.
--   crt crt.lua rtt [clients] [rounds]   (default 100 clients x 1000 round trips
--                                         of 64 bytes): RESULT rtt_per_sec=<n>
--   crt crt.lua bulk [MiB]               (default 1024): one stream pushes MiB
--                                         through loopback: RESULT mib_per_sec=<n>
-- Checks what it receives and exits non-zero when it is wrong.
local mode = arg[1] or "rtt"
local net = crt.net

local function fail(msg)
  io.stderr:write("w7 crt: ", msg, "\n")
  os.exit(1)
end

if mode == "rtt" then
  local clients = math.tointeger(tonumber(arg[2] or "100"))
  local rounds = math.tointeger(tonumber(arg[3] or "1000"))
  local server = assert(net.serve({host = "127.0.0.1", port = 0}, function(s)
    while true do
      local data = s:read()
      if not data then break end
      s:write(data)
    end
  end))
  local msg = string.rep("x", 64)
  local t0 = crt.now()
  local tasks = {}
  for i = 1, clients do
    tasks[i] = crt.spawn(function()
      local s = assert(net.connect("127.0.0.1", server.port))
      for _ = 1, rounds do
        s:write(msg)
        local back = s:read_exactly(64)
        if back ~= msg then fail("bad echo") end
      end
      s:close()
      return rounds
    end)
  end
  local total = 0
  for i = 1, clients do total = total + tasks[i]:await() end
  local dt = crt.now() - t0
  server:close()
  if total ~= clients * rounds then fail("counted " .. total) end
  print(string.format("RESULT rtt_per_sec=%.0f", total / dt))
elseif mode == "bulk" then
  local mib = math.tointeger(tonumber(arg[2] or "1024"))
  local received = crt.channel(1)
  local server = assert(net.serve({host = "127.0.0.1", port = 0}, function(s)
    local n = 0
    while true do
      local data = s:read()
      if not data then break end
      n = n + #data
    end
    received:send(n)
  end))
  local chunk = string.rep("y", 1024 * 1024)
  local t0 = crt.now()
  local s = assert(net.connect("127.0.0.1", server.port))
  for _ = 1, mib do assert(s:write(chunk)) end
  s:close()
  local n = received:recv()
  local dt = crt.now() - t0
  server:close()
  if n ~= mib * 1024 * 1024 then fail("received " .. n .. " bytes") end
  print(string.format("RESULT mib_per_sec=%.1f", mib / dt))
else
  fail("unknown mode " .. tostring(mode))
end
