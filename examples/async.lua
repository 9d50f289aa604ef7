-- async.lua - the classic asyncio example, in crt: two fetch_data tasks that
-- each wait 2 seconds finish together in about 2 seconds, because waiting
-- suspends only the task that waits.
--
--   import asyncio
--   async def fetch_data():
--       print("Fetching data...")
--       await asyncio.sleep(2)
--       print("Data fetched!")
--   async def main():
--       await asyncio.gather(fetch_data(), fetch_data())
--   asyncio.run(main())
--
-- Run: scripts/crt examples/async.lua   (CRT_EXAMPLE_SECONDS shortens the wait)
local delay = tonumber(os.getenv("CRT_EXAMPLE_SECONDS")) or 2

local function fetch_data()
  print("Fetching data...")
  crt.sleep(delay)
  print("Data fetched!")
end

local started = crt.now()
crt.all { fetch_data, fetch_data }
print(string.format("Both finished in %.2f s", crt.now() - started))
