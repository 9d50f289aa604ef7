-- W4 for crt, separate runs: 100,000 tiny jobs (x * 2) through a pool of 2
-- threads, each submitted by pool:run and awaited by its own task.
-- Usage: crt crt_run.lua [N]
local N = math.tointeger(tonumber(arg and arg[1] or "100000"))
local pool = crt.thread.pool { size = 2 }
local function double(x) return x * 2 end

local sum, left = 0, N
local done = crt.channel(1)
local t0 = crt.now()
for i = 1, N do
  crt.spawn(function()
    local r = pool:run(double, i):await()
    sum = sum + r
    left = left - 1
    if left == 0 then done:send(true) end
  end)
end
done:recv()
local t = crt.now() - t0
if sum ~= N * (N + 1) then
  io.stderr:write(("w4 crt_run: wrong sum %d, expected %d\n"):format(sum, N * (N + 1)))
  os.exit(1)
end
pool:close()
print(string.format("RESULT time_s=%.4f jobs_per_s=%.0f us_per_job=%.3f", t, N / t, t / N * 1e6))
