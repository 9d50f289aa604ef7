-- Message throughput between a crt process and its child:
--   small: N small messages (integers) streamed parent -> child, the child
--          answers with the count at the end;
--   rtt:   M round trips (send, then wait for the echo);
--   big:   B messages of 1 MiB (strings) parent -> child, acknowledged at the end.
-- Prints one line:
--   RESULT crt_small_per_s=... crt_roundtrip_per_s=... crt_mib_per_s=...
-- Usage: crt crt.lua [N] [M] [B]
local N = math.tointeger(tonumber(arg and arg[1] or "500000"))
local M = math.tointeger(tonumber(arg and arg[2] or "20000"))
local B = math.tointeger(tonumber(arg and arg[3] or "512"))

local function counter()
  local n, bytes = 0, 0
  while true do
    local v = crt.parent:recv()
    if v == nil then break end
    n = n + 1
    if type(v) == "string" then bytes = bytes + #v end
  end
  return n, bytes
end

local function echo()
  while true do
    local v = crt.parent:recv()
    if v == nil then return end
    crt.parent:send(v)
  end
end

-- Children are started before the clock starts: this measures messages.
local c = crt.process.spawn(counter)
local t0 = crt.now()
for i = 1, N do c:send(i) end
c:close()
assert(c:await() == N)
local small = N / (crt.now() - t0)

c = crt.process.spawn(echo)
c:send(0)
c:recv()
t0 = crt.now()
for i = 1, M do
  c:send(i)
  assert(c:recv() == i)
end
local rtt = M / (crt.now() - t0)
c:close()
c:await()

local mib = ("x"):rep(1024 * 1024)
c = crt.process.spawn(counter)
t0 = crt.now()
for _ = 1, B do c:send(mib) end
c:close()
local n, bytes = c:await()
assert(n == B and bytes == B * #mib)
local big = B / (crt.now() - t0)

print(("RESULT crt_small_per_s=%.0f crt_roundtrip_per_s=%.0f crt_mib_per_s=%.1f"):format(small, rtt, big))
