-- W1 for crt, primary variant: spawn N tasks and keep no handle to them.
-- Each task sleeps 50 ms and then counts. The task that brings the count to N
-- wakes the main chunk through a channel (a wait-group, as one would write it
-- without keeping the task handles), which checks the count and exits.
-- One worker function serves every task, as in the peers; a fresh closure per
-- task (crt.spawn(function() ... end) in the loop) costs about 60 more bytes
-- per task.
-- Usage: crt crt.lua [N]   (N = 0 measures the runtime with no task)
local N = math.tointeger(tonumber(arg and arg[1] or "100000"))
local n = 0
local done = crt.channel(1)

local function worker()
  crt.sleep(0.05)
  n = n + 1
  if n == N then done:send(n) end
end

for _ = 1, N do
  crt.spawn(worker)
end

if N > 0 then done:recv() end
if n ~= N then
  io.stderr:write(("w1 crt: counted %d, expected %d\n"):format(n, N))
  os.exit(1)
end
print(n)
