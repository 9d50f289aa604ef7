-- W5 for crt: a worker thread sends 1,000,000 small tables {i = i, s =
-- "hello"} to the main task through a channel shared with the thread; the
-- main task receives them and adds up i. The second argument sets the
-- channel's capacity (default 4096; "inf" for an unbounded channel).
-- Usage: crt crt.lua [N [capacity]]
local N = math.tointeger(tonumber(arg and arg[1] or "1000000"))
local caparg = arg and arg[2] or "4096"
local ch = caparg == "inf" and crt.channel() or crt.channel(math.tointeger(tonumber(caparg)))

local t0 = crt.now()
local producer = crt.thread.spawn(function(c, n)
  for i = 1, n do c:send({ i = i, s = "hello" }) end
  c:close()
end, ch, N)
local sum, count = 0, 0
for v in ch:iter() do
  sum = sum + v.i
  count = count + 1
end
local t = crt.now() - t0
producer:await()
if count ~= N or sum ~= N * (N + 1) // 2 then
  io.stderr:write(("w5 crt: %d messages, sum %d\n"):format(count, sum))
  os.exit(1)
end
print(string.format("RESULT time_s=%.3f us_per_msg=%.3f msgs_per_s=%.0f", t, t / N * 1e6, N / t))
