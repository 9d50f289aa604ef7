-- thread_helper.lua - shared checks of the thread specs: after each spec no
-- job may still be out (an interrupted job comes back through the loop, so
-- wait for it with a deadline), and then the usual helper.assert_clean.
local crt = require "crt"
local helper = require "tests.spec.helper"

local th = {}

-- Wait (polling, with a deadline: never a race) until pred() is true.
function th.wait_until(pred, what, seconds)
  local deadline = crt.now() + (seconds or 30)
  while not pred() do
    if crt.now() > deadline then error("timed out waiting for " .. (what or "a condition"), 2) end
    crt.sleep(0.001)
  end
end

function th.clean()
  th.wait_until(function() return crt.thread.stats().jobs == 0 end, "jobs to come back")
  helper.assert_clean()
end

function th.range(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

return th
