-- processes.lua - the classic multiprocessing example, in crt: two worker
-- processes that each wait 2 seconds finish together in about 2 seconds,
-- because each runs in its own process.
--
--   from multiprocessing import Process
--   import time
--   def fetch_data():
--       print("Fetching data...")
--       time.sleep(2)
--       print("Data fetched!")
--   if __name__ == "__main__":
--       p1 = Process(target=fetch_data)
--       p2 = Process(target=fetch_data)
--       p1.start(); p2.start()
--       p1.join(); p2.join()
--
-- crt.process.spawn starts a child crt process that runs the function (a
-- copy of it, with its upvalues and arguments) as its main task, with the
-- whole crt API; child:await() is the join and returns what the function
-- returned. The main task waits without blocking the loop.
--
-- Run: scripts/crt examples/processes.lua   (CRT_EXAMPLE_SECONDS shortens the wait)
local delay = tonumber(os.getenv("CRT_EXAMPLE_SECONDS")) or 2

local function fetch_data(seconds)
  print("Fetching data...")
  crt.sleep(seconds)
  print("Data fetched!")
  return "done"
end

local started = crt.now()
local p1 = crt.process.spawn(fetch_data, delay)
local p2 = crt.process.spawn(fetch_data, delay)
p1:await()
p2:await()
print(string.format("Both finished in %.2f s (processes %d and %d)", crt.now() - started,
  p1.pid, p2.pid))
