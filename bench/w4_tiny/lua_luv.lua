-- W4 for luv under lua5.4: 100,000 tiny jobs (x * 2) queued separately on
-- libuv's work queue (uv.new_work), with UV_THREADPOOL_SIZE=2 set by the
-- caller. Usage: UV_THREADPOOL_SIZE=2 lua5.4 lua_luv.lua [N]
local uv = require "luv"
local N = math.tointeger(tonumber(arg[1] or "100000"))
local sum = 0
local t0 = uv.hrtime()
local w = uv.new_work(function(x) return x * 2 end, function(r) sum = sum + r end)
for i = 1, N do w:queue(i) end
uv.run()
local t = (uv.hrtime() - t0) / 1e9
if sum ~= N * (N + 1) then
  io.stderr:write("w4 luv: wrong sum\n")
  os.exit(1)
end
print(string.format("RESULT time_s=%.4f jobs_per_s=%.0f us_per_job=%.3f", t, N / t, t / N * 1e6))
