-- combining.lua - asynchronous tasks, processes and threads together: a
-- server-like workload where thousands of I/O-bound requests (tasks on the
-- event loop; timers stand in for reading the request and writing the
-- answer) each need a piece of CPU-heavy work. The CPU work runs
--
--   inline       in the task itself: it blocks the loop, every other
--                request and timer waits;
--   processes    on a crt.process.pool: the loop stays responsive and the
--                cores work in parallel, each job crossing a pipe;
--   threads      on a crt.thread.pool (when crt.thread is there): the same,
--                with jobs crossing between Lua states in memory.
--
-- It prints, for each way, the total time, the worst lateness of a 5 ms
-- ticker task (how long the loop was blocked) and a checksum of the
-- answers (the same for all).
--
-- Run: scripts/crt examples/combining.lua [requests] [work]
--      (defaults: 2000 requests, 100000 loop steps of work each)
local N = math.tointeger(tonumber(arg and arg[1])) or 2000
local WORK = math.tointeger(tonumber(arg and arg[2])) or 100000

-- The CPU-heavy part: a loop of integer arithmetic (a stand-in for parsing,
-- compressing, hashing ...). It runs wherever it is sent, so it uses nothing
-- but its arguments.
local function cpu_work(n, seed)
  local h = seed
  for i = 1, n do h = (h * 31 + i) % 2147483647 end
  return h
end

-- One request: wait for "I/O", compute, wait again. `compute` is how this
-- way runs cpu_work.
local function request(compute, i)
  crt.sleep(0.001 * (i % 20)) -- reading the request
  local h = compute(i)
  crt.sleep(0.001 * (i % 7)) -- writing the answer
  return h
end

local function measure(compute)
  local lag, stop = 0, false
  local ticker = crt.spawn(function()
    while not stop do
      local t = crt.now()
      crt.sleep(0.005)
      lag = math.max(lag, crt.now() - t - 0.005)
    end
  end)
  local t0 = crt.now()
  local tasks = {}
  for i = 1, N do tasks[i] = crt.spawn(request, compute, i) end
  local sum = 0
  for i = 1, N do sum = (sum + tasks[i]:await()) % 2147483647 end
  local took = crt.now() - t0
  stop = true
  ticker:await()
  return took, lag, sum
end

local rows = {}
local function row(name, compute, pool)
  local took, lag, sum = measure(compute)
  if pool then pool:close() end
  rows[#rows + 1] = { name, took, lag, sum }
end

row("inline", function(i) return cpu_work(WORK, i) end)

local procs = crt.process.pool {}
-- Start the workers before measuring, as a server would at start-up.
crt.all { procs:run(cpu_work, 1, 1), procs:run(cpu_work, 1, 1) }
row("processes", function(i) return procs:run(cpu_work, WORK, i):await() end, procs)

if crt.thread then
  local threads = crt.thread.pool {}
  row("threads", function(i) return threads:run(cpu_work, WORK, i):await() end, threads)
end

print(string.format("%d requests, each waiting on I/O twice and doing %d steps of CPU work",
  N, WORK))
print(string.format("%-10s %10s %16s %12s", "way", "total (s)", "worst lag (ms)", "checksum"))
for _, r in ipairs(rows) do
  print(string.format("%-10s %10.3f %16.1f %12d", r[1], r[2], r[3] * 1000, r[4]))
end
for _, r in ipairs(rows) do
  if r[4] ~= rows[1][4] then error("checksums differ: " .. r[1]) end
end
