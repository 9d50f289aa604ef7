-- W3 for crt: 8 CPU-bound jobs of about 0.4 s each, run one after the other
-- in the main task, then on the thread pool (crt.thread.map, one job per
-- item). Prints the speed-up of the parallel run over the sequential one.
-- Usage: crt crt.lua [jobs [iterations]]
local JOBS = math.tointeger(tonumber(arg and arg[1] or "8"))
local ITER = math.tointeger(tonumber(arg and arg[2] or "65000000"))

local function work(n)
  local x = 0
  for i = 1, n do x = (x + i * i) % 1000003 end
  return x
end

local items = {}
for i = 1, JOBS do items[i] = ITER end

local t0 = crt.now()
local seq = {}
for i = 1, JOBS do seq[i] = work(items[i]) end
local t_seq = crt.now() - t0

t0 = crt.now()
local par = crt.thread.map(work, items, { chunk = 1 })
local t_par = crt.now() - t0

for i = 1, JOBS do
  if seq[i] ~= par[i] then
    io.stderr:write("w3 crt: wrong result\n")
    os.exit(1)
  end
end
print(string.format("RESULT speedup=%.2f seq_s=%.3f par_s=%.3f job_s=%.3f threads=%d",
  t_seq / t_par, t_seq, t_par, t_seq / JOBS, crt.thread.size()))
