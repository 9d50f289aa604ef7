-- W3 for luv under lua5.4: 8 CPU-bound jobs sequentially, then through
-- libuv's work queue (uv.new_work / queue_work), with one thread per core
-- (UV_THREADPOOL_SIZE is set by the caller or defaults to 4).
-- Usage: lua5.4 lua_luv.lua [jobs [iterations]]
local uv = require "luv"
local JOBS = math.tointeger(tonumber(arg[1] or "8"))
local ITER = math.tointeger(tonumber(arg[2] or "65000000"))

local function work(n)
  local x = 0
  for i = 1, n do x = (x + i * i) % 1000003 end
  return x
end

local t0 = uv.hrtime()
local seq = {}
for i = 1, JOBS do seq[i] = work(ITER) end
local t_seq = (uv.hrtime() - t0) / 1e9

local par, done = {}, 0
t0 = uv.hrtime()
local w = uv.new_work(function(k, n)
  local x = 0
  for i = 1, n do x = (x + i * i) % 1000003 end
  return k, x
end, function(k, x)
  par[k] = x
  done = done + 1
end)
for k = 1, JOBS do w:queue(k, ITER) end
uv.run()
local t_par = (uv.hrtime() - t0) / 1e9
for i = 1, JOBS do
  if seq[i] ~= par[i] then
    io.stderr:write("w3 luv: wrong result\n")
    os.exit(1)
  end
end
print(string.format("RESULT speedup=%.2f seq_s=%.3f par_s=%.3f job_s=%.3f", t_seq / t_par, t_seq,
  t_par, t_seq / JOBS))
