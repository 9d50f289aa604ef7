-- W1 for crt, second variant: keep the N task handles and await each one.
-- Usage: crt crt_await.lua [N]
local N = math.tointeger(tonumber(arg and arg[1] or "100000"))
local n = 0
local tasks = {}

local function worker()
  crt.sleep(0.05)
  n = n + 1
end

for i = 1, N do
  tasks[i] = crt.spawn(worker)
end
for i = 1, N do
  tasks[i]:await()
end

if n ~= N then
  io.stderr:write(("w1 crt_await: counted %d, expected %d\n"):format(n, N))
  os.exit(1)
end
print(n)
