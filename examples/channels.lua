-- channels.lua - a pipeline of tasks connected by channels: a producer, a
-- pool of workers that each take the next job (a bounded channel gives
-- back-pressure: the producer waits while the workers are busy), and a
-- collector that reads results until the channel is closed.
--
-- Run: scripts/crt examples/channels.lua
local jobs = crt.channel(4) -- at most 4 jobs waiting
local results = crt.channel() -- unbounded

local function worker(id)
  for n in jobs:iter() do -- until jobs is closed and drained
    crt.sleep(0.01 * (n % 3)) -- pretend to wait on I/O
    results:send { worker = id, n = n, square = n * n }
  end
end

local workers = crt.group(function(g)
  -- The producer.
  g:spawn(function()
    for n = 1, 20 do jobs:send(n) end
    jobs:close()
  end)
  -- Three workers.
  for id = 1, 3 do g:spawn(worker, id) end
  return 3
end)
results:close() -- every worker has finished: nothing more will come

local total, count, by_worker = 0, 0, {}
for r in results:iter() do
  total = total + r.square
  count = count + 1
  by_worker[r.worker] = (by_worker[r.worker] or 0) + 1
end
print(string.format("%d results from %d workers, sum of squares %d", count, workers, total))
for id = 1, workers do
  print(string.format("  worker %d handled %d jobs", id, by_worker[id] or 0))
end
assert(total == 2870 and count == 20)

-- select: wait on several channels at once, with a timeout.
local fast, slow = crt.channel(), crt.channel()
crt.spawn(function() crt.sleep(0.01) fast:send("fast answer") end)
local slow_sender = crt.spawn(function() crt.sleep(1) slow:send("slow answer") end)
local i, v = crt.select { { fast, "recv" }, { slow, "recv" }, timeout = 0.5 }
print("select got case " .. i .. ": " .. v)
local _, why = crt.select { { slow, "recv" }, timeout = 0.01 }
print("then: " .. why)
slow_sender:cancel() -- nobody wants its answer any more
