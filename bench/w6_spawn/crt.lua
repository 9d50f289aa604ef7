-- W6 for crt: start N children that each send one message back and exit,
-- all at once and then one after another; a child counts as done when its
-- message came and it was reaped (await). Prints one line:
--   RESULT crt_burst_per_s=... crt_serial_per_s=... n=N
-- Usage: crt crt.lua [N]
local N = math.tointeger(tonumber(arg and arg[1] or "200"))

local function child() crt.parent:send("x") end

local function finish(c)
  assert(c:recv() == "x", "no message")
  c:await()
end

local t0 = crt.now()
local kids = {}
for i = 1, N do kids[i] = assert(crt.process.spawn(child)) end
for i = 1, N do finish(kids[i]) end
local burst = crt.now() - t0

t0 = crt.now()
for _ = 1, N do finish(assert(crt.process.spawn(child))) end
local serial = crt.now() - t0

print(("RESULT crt_burst_per_s=%.1f crt_serial_per_s=%.1f n=%d"):format(N / burst, N / serial, N))
