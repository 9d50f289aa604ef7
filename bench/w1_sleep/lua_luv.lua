-- W1 for luv under lua5.4: one coroutine per task, suspended on its own
-- uv timer and resumed from the timer callback, as a luv user writes it.
-- Usage: lua5.4 lua_luv.lua [N]
local uv = require "luv"

local N = math.tointeger(tonumber(arg[1] or "100000"))
local n = 0

local function sleep(ms)
  local co = coroutine.running()
  local timer = uv.new_timer()
  timer:start(ms, 0, function()
    timer:close()
    local ok, err = coroutine.resume(co)
    if not ok then error(err, 0) end
  end)
  coroutine.yield()
end

local function worker()
  sleep(50)
  n = n + 1
end

for _ = 1, N do
  local ok, err = coroutine.resume(coroutine.create(worker))
  if not ok then error(err, 0) end
end
uv.run()

if n ~= N then
  io.stderr:write(("w1 luv: counted %d, expected %d\n"):format(n, N))
  os.exit(1)
end
print(n)
