-- http_fetch.lua - a minimal HTTP/1.1 client on crt.net, fetching files
-- concurrently from a local `python3 -m http.server`.
--
--   crt examples/http_fetch.lua [FILES] [FETCHES] [CONCURRENCY]
--                                         (default 5 files, 40 fetches, 4 at a time)
--
-- Writes FILES files of different sizes into a temporary directory, starts
-- python3's HTTP server on a free port with crt.process.command (its first
-- line of output tells the port), runs FETCHES GET requests from CONCURRENCY
-- tasks at once (a channel hands out the work), checks every body against the
-- file, then stops the server and cleans up.
local fs, net = crt.fs, crt.net
local NFILES = math.tointeger(tonumber(arg[1] or "5"))
local NFETCH = math.tointeger(tonumber(arg[2] or "40"))
local CONCURRENCY = math.tointeger(tonumber(arg[3] or "4"))

-- A GET request: status code, headers (lower-case names) and body.
local function get(host, port, path)
  local s, err = net.connect(host, port)
  if not s then return nil, err end
  s:write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"):format(path, host, port))
  local status = s:readline()
  local code = tonumber(status and status:match("^HTTP/1%.%d (%d%d%d)"))
  if not code then
    s:close()
    return nil, "bad status line: " .. tostring(status)
  end
  local headers = {}
  for line in s:lines() do
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body
  local len = tonumber(headers["content-length"])
  if len then
    body = s:read_exactly(len)
  else -- until the server closes the connection
    local parts = {}
    for chunk in function() return s:read() end do parts[#parts + 1] = chunk end
    body = table.concat(parts)
  end
  s:close()
  return code, headers, body
end

-- The files to serve.
local dir = ("/tmp/crt-http-fetch-%d-%d"):format(os.time(), math.random(1e9))
assert(fs.mkdir(dir))
local files = {}
for i = 1, NFILES do
  local name = ("file%d.txt"):format(i)
  local lines = {}
  for j = 1, i * 500 do lines[j] = ("line %d of %s\n"):format(j, name) end
  local body = table.concat(lines)
  assert(fs.write(dir .. "/" .. name, body))
  files[i] = {name = name, body = body}
end

-- The server: python's own, unbuffered (-u) so that its first line comes at
-- once; its request log (stderr) is not needed.
local server = assert(crt.process.command(
  {"python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir},
  {stderr = "null"}))
local ready = server.stdout:readline()
local port = tonumber(ready and ready:match(" port (%d+)"))
assert(port, "http.server did not start: " .. tostring(ready))
print("python3 http.server on port " .. port)

-- NFETCH requests, at most CONCURRENCY at a time (python's server accepts
-- few connections at once: its listen backlog is 5).
local t0 = crt.now()
local jobs = crt.channel()
crt.spawn(function()
  for i = 1, NFETCH do jobs:send(files[(i - 1) % NFILES + 1]) end
  jobs:close()
end)
local workers = {}
for w = 1, CONCURRENCY do
  workers[w] = function()
    local n, bytes = 0, 0
    for f in jobs:iter() do
      local code, headers, body = get("127.0.0.1", port, "/" .. f.name)
      assert(code == 200, ("GET /%s: %s"):format(f.name, tostring(headers)))
      assert(body == f.body, "GET /" .. f.name .. ": wrong body")
      n, bytes = n + 1, bytes + #body
    end
    return n, bytes
  end
end
local n, bytes = 0, 0
for _, r in ipairs(crt.all(workers)) do n, bytes = n + r[1], bytes + r[2] end
assert(n == NFETCH)
print(("%d GETs by %d concurrent clients, %d bytes, all bodies match (%.2f s)"):format(n,
  CONCURRENCY, bytes, crt.now() - t0))

local code = get("127.0.0.1", port, "/no-such-file")
print("GET /no-such-file: " .. tostring(code))

-- Stop the server and clean up.
server:kill("SIGTERM")
local exit_code, signal = server:wait()
print("server stopped: " .. tostring(signal or exit_code))
for _, f in ipairs(files) do assert(fs.unlink(dir .. "/" .. f.name)) end
assert(fs.rmdir(dir))
