-- structured.lua - structured concurrency: crt.group starts child tasks and
-- returns only when all have finished; the first failure cancels the
-- siblings, waits for their cleanup, and is re-raised. crt.timeout and
-- crt.race bound how long work may take.
--
-- Run: scripts/crt examples/structured.lua
local function download(name, seconds, fail)
  local ok, err = pcall(function()
    crt.sleep(seconds)
    if fail then error("download of " .. name .. " failed") end
  end)
  if not ok and err == crt.Cancelled then
    print("  " .. name .. ": cancelled, cleaning up")
    error(err, 0) -- let the cancellation go on
  elseif not ok then
    error(err, 0)
  end
  print("  " .. name .. ": done")
  return name
end

print("1. a group where everything succeeds")
crt.group(function(g)
  g:spawn(download, "a.txt", 0.02)
  g:spawn(download, "b.txt", 0.01)
end)

print("2. a group where one child fails: the others are cancelled")
local ok, err = pcall(crt.group, function(g)
  g:spawn(download, "c.txt", 0.5)
  g:spawn(download, "d.txt", 0.5)
  g:spawn(download, "broken.txt", 0.01, true)
end)
print("  group failed: " .. tostring(ok == false and err:match("download of %S+ failed")))

print("3. a deadline")
print("  ", crt.timeout(0.02, download, "slow.txt", 1))

print("4. a race between mirrors")
print("  winner:", crt.race {
  function() return download("mirror-1", 0.03) end,
  function() return download("mirror-2", 0.01) end,
})
