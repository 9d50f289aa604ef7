-- pipeline.lua - producer and consumers across threads with a bounded
-- channel: a dedicated thread produces ranges of numbers, worker threads
-- count the primes in each range, and the main task adds up the counts.
--
--   producer thread --(jobs: capacity 4)--> N consumer threads
--                    --(counts)--> main task
--
-- The jobs channel holds at most 4 ranges: when the consumers fall behind,
-- the producer's send blocks its thread (back-pressure) instead of filling
-- memory. Both channels are plain crt.channel values passed as arguments:
-- every thread sees the same queue. Closing `jobs` ends the consumers'
-- `for ... in jobs:iter()` loops; the main task knows all counts are in
-- when every consumer has returned.
--
-- Run: scripts/crt examples/pipeline.lua [limit]   (default 2,000,000)
local limit = math.tointeger(tonumber(arg and arg[1] or "2000000"))
local STEP = 50000
local nconsumers = crt.thread.size()

local jobs = crt.channel(4)   -- bounded: back-pressure on the producer
local counts = crt.channel()  -- unbounded: consumers never wait to report

local producer = crt.thread.spawn(function(ch, lim, step)
  local sent, waited = 0, 0
  for lo = 1, lim, step do
    local t0 = crt.now()
    ch:send({ lo = lo, hi = math.min(lo + step - 1, lim) })
    if crt.now() - t0 > 0.001 then waited = waited + 1 end
    sent = sent + 1
  end
  ch:close()
  return sent, waited
end, jobs, limit, STEP)

local function count_primes(ch, out)
  local ranges = 0
  for r in ch:iter() do
    local n = 0
    for k = math.max(r.lo, 2), r.hi do
      local prime = true
      for d = 2, math.floor(math.sqrt(k)) do
        if k % d == 0 then prime = false break end
      end
      if prime then n = n + 1 end
    end
    out:send(n)
    ranges = ranges + 1
  end
  return crt.thread.id(), ranges
end

local started = crt.now()
local consumers = {}
for i = 1, nconsumers do consumers[i] = crt.thread.spawn(count_primes, jobs, counts) end

-- Close `counts` once every consumer is done, so the sum loop below ends.
crt.spawn(function()
  for i, c in ipairs(consumers) do
    local id, ranges = c:await()
    print(string.format("consumer %d (thread %d) handled %d ranges", i, id, ranges))
  end
  counts:close()
end)

local total = 0
for n in counts:iter() do total = total + n end
local sent, waited = producer:await()
print(string.format("%d primes below %d, %d ranges, producer blocked %d times on a full channel",
  total, limit + 1, sent, waited))
print(string.format("%d consumer threads, %.2f s", nconsumers, crt.now() - started))
