-- W4 for crt, one map: 100,000 tiny jobs (x * 2) through a pool of 2 threads
-- as one pool:map (default chunking: four chunks per worker).
-- Usage: crt crt_map.lua [N]
local N = math.tointeger(tonumber(arg and arg[1] or "100000"))
local list = {}
for i = 1, N do list[i] = i end
local pool = crt.thread.pool { size = 2 }
local function double(x) return x * 2 end

local t0 = crt.now()
local r = pool:map(double, list)
local t = crt.now() - t0

local sum = 0
for i = 1, N do sum = sum + r[i] end
if sum ~= N * (N + 1) then
  io.stderr:write("w4 crt_map: wrong sum\n")
  os.exit(1)
end
pool:close()
print(string.format("RESULT time_s=%.4f jobs_per_s=%.0f us_per_job=%.3f", t, N / t, t / N * 1e6))
