-- echo_clients.lua - 1,000 concurrent connections to the line echo server.
--
--   crt examples/echo_clients.lua [N] [LINES]   (default 1000 clients, 20 lines)
--
-- Starts examples/echo_server.lua as a child crt process (crt.process.command),
-- waits for its "listening on HOST:PORT" line, opens N connections at once
-- (one task each), sends LINES lines on each and checks every echo, then
-- tells the server to shut down and waits for it to exit.
local N = math.tointeger(tonumber(arg[1] or "1000"))
local LINES = math.tointeger(tonumber(arg[2] or "20"))

-- Each connection needs a descriptor here and one in the server: stay under
-- the soft limit on open files (often 1024 on desktops).
local r = crt.process.exec({"sh", "-c", "ulimit -n"})
local limit = tonumber(r and r.stdout or "") or 1024
if N > limit - 64 then
  print(("note: ulimit -n is %d, using %d clients instead of %d"):format(limit, limit - 64, N))
  N = limit - 64
end

local crt_exe = arg[-1] or "crt"
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local server = assert(crt.process.command({crt_exe, dir .. "/echo_server.lua", "0"},
                                          {stderr = "inherit"}))
local ready = server.stdout:readline()
local host, port = (ready or ""):match("^listening on (.+):(%d+)$")
assert(port, "the server did not start: " .. tostring(ready))
port = tonumber(port)

local t0 = crt.now()
local lines_ok = 0
local function client(i)
  local s = assert(crt.net.connect(host, port))
  for j = 1, LINES do
    local msg = ("client %d line %d"):format(i, j)
    assert(s:write(msg .. "\n"))
    local back = s:readline()
    assert(back == msg, ("client %d: sent %q, got %q"):format(i, msg, tostring(back)))
    lines_ok = lines_ok + 1
  end
  s:close()
end

local tasks = {}
for i = 1, N do tasks[i] = crt.spawn(client, i) end
crt.all(tasks) -- re-raises the first failure, if any
local dt = crt.now() - t0
print(("%d clients, %d lines echoed in %.2f s"):format(N, lines_ok, dt))

-- Ask the server to stop, and collect what it printed.
local s = assert(crt.net.connect(host, port))
s:write("shutdown\n")
assert(s:readline() == "bye")
s:close()
local rest = {}
for line in server.stdout:lines() do rest[#rest + 1] = line end
local code = server:wait()
print("server: " .. table.concat(rest, "\n"))
assert(code == 0, "server exit code " .. tostring(code))
