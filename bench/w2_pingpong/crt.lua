-- W2 for crt: two tasks exchange N round trips through two channels. ping
-- sends i on a, pong receives it from a and sends it back on b, ping receives
-- it from b. Capacity 0 (rendezvous) by default, as a Go programmer would
-- write it; the second argument sets another capacity.
-- Usage: crt crt.lua [N [capacity]]
local N = math.tointeger(tonumber(arg and arg[1] or "1000000"))
local cap = math.tointeger(tonumber(arg and arg[2] or "0"))
local a, b = crt.channel(cap), crt.channel(cap)

local pong = crt.spawn(function()
  for _ = 1, N do
    b:send(a:recv())
  end
end)

local ping = crt.spawn(function()
  local sum = 0
  for i = 1, N do
    a:send(i)
    sum = sum + b:recv()
  end
  return sum
end)

local sum = ping:await()
pong:await()
if sum ~= N * (N + 1) // 2 then
  io.stderr:write(("w2 crt: sum %d, expected %d\n"):format(sum, N * (N + 1) // 2))
  os.exit(1)
end
print(sum)
