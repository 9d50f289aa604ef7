-- W3 for crt: 8 CPU-bound jobs of about 0.4 s each, run one after another in
-- this process, then on a crt.process.pool of 2 workers (the time includes
-- starting the pool). The job is a loop of integer arithmetic whose length
-- is calibrated here so that one job takes about JOB seconds.
-- Prints one line: RESULT crt_speedup=... crt_seq_s=... crt_par_s=... job_s=...
-- Usage: crt crt.lua [jobs] [job seconds] [workers]
local NJOBS = math.tointeger(tonumber(arg and arg[1] or "8"))
local JOB = tonumber(arg and arg[2] or "0.4")
local WORKERS = math.tointeger(tonumber(arg and arg[3] or "2"))

local function work(n)
  local s = 0
  for i = 1, n do s = (s + i * i) % 1000003 end
  return s
end

-- Calibrate: n iterations for one job of JOB seconds.
local n = 100000
while true do
  local t0 = crt.now()
  work(n)
  local dt = crt.now() - t0
  if dt > 0.05 then
    n = math.floor(n * JOB / dt)
    break
  end
  n = n * 4
end

local jobs = {}
for i = 1, NJOBS do jobs[i] = n + i end -- distinct results

local t0 = crt.now()
local expect = {}
for i = 1, NJOBS do expect[i] = work(jobs[i]) end
local seq = crt.now() - t0

t0 = crt.now()
local pool = crt.process.pool { size = WORKERS }
local got = pool:map(work, jobs, { chunk = 1 })
local par = crt.now() - t0
pool:close()

for i = 1, NJOBS do assert(got[i] == expect[i], "wrong result") end
print(("RESULT crt_speedup=%.2f crt_seq_s=%.3f crt_par_s=%.3f job_s=%.3f"):format(
  seq / par, seq, par, seq / NJOBS))
