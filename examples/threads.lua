-- threads.lua - the classic threading example, in crt: two threads that each
-- wait 2 seconds finish together in about 2 seconds, because each blocks
-- only its own OS thread.
--
--   import threading, time
--   def fetch_data():
--       print("Fetching data...")
--       time.sleep(2)
--       print("Data fetched!")
--   t1 = threading.Thread(target=fetch_data)
--   t2 = threading.Thread(target=fetch_data)
--   t1.start(); t2.start()
--   t1.join(); t2.join()
--
-- crt.thread.spawn starts a dedicated thread with its own Lua state; inside
-- it crt.sleep blocks that thread (there is no event loop there), and
-- worker:await() is the join. The main task waits without blocking the
-- loop, so timers and I/O of other tasks would keep running meanwhile.
--
-- Run: scripts/crt examples/threads.lua   (CRT_EXAMPLE_SECONDS shortens the wait)
local delay = tonumber(os.getenv("CRT_EXAMPLE_SECONDS")) or 2

local function fetch_data(seconds)
  print("Fetching data...")
  crt.sleep(seconds)
  print("Data fetched!")
  return crt.thread.id()
end

local started = crt.now()
local t1 = crt.thread.spawn(fetch_data, delay)
local t2 = crt.thread.spawn(fetch_data, delay)
local id1, id2 = t1:await(), t2:await()
print(string.format("Both finished in %.2f s (threads %d and %d)", crt.now() - started, id1, id2))
