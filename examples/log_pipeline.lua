-- log_pipeline.lua - follow a growing log file and summarise it through
-- external programs, all streaming, with crt.process.command.
--
--   crt examples/log_pipeline.lua [LINES]   (default 300 log lines)
--
-- A writer task appends log lines to a file (crt.fs.append) in small bursts.
-- `tail -F` follows the file; a reader task takes its lines as they come,
-- keeps the WARN and ERROR ones, and streams their component names into
-- `sort | uniq -c | sort -rn` (one more program, fed through its stdin).
-- When the writer's END line comes through, tail is stopped and the summary
-- is read back and checked against what the writer wrote.
local fs = crt.fs
local LINES = math.tointeger(tonumber(arg[1] or "300"))

local path = ("/tmp/crt-log-pipeline-%d-%d.log"):format(os.time(), math.random(1e9))
assert(fs.write(path, ""))

-- The writer: a deterministic mix of levels and components.
local levels = {"INFO", "INFO", "WARN", "INFO", "ERROR"}
local components = {"db", "http", "auth", "cache"}
local expected = {}
local writer = crt.spawn(function()
  local burst = {}
  for i = 1, LINES do
    local level = levels[i % #levels + 1]
    local comp = components[(i * i) % 7 % #components + 1]
    if level ~= "INFO" then expected[comp] = (expected[comp] or 0) + 1 end
    burst[#burst + 1] = ("2024-01-01T00:00:%02d %s [%s] event %d\n"):format(i % 60, level,
      comp, i)
    if #burst == 25 or i == LINES then
      assert(fs.append(path, table.concat(burst)))
      burst = {}
      crt.sleep(0.002) -- the log grows while tail follows it
    end
  end
  assert(fs.append(path, "END\n"))
end)

local tail = assert(crt.process.command({"tail", "-n", "+1", "-F", path}, {stderr = "null"}))
local summary = assert(crt.process.command({"sh", "-c", "sort | uniq -c | sort -k1,1nr -k2"}))

-- The reader: tail's lines in, component names of problems out.
local seen = 0
for line in tail.stdout:lines() do
  if line == "END" then break end
  seen = seen + 1
  local level, comp = line:match("^%S+ (%u+) %[(%w+)%]")
  if level == "WARN" or level == "ERROR" then assert(summary.stdin:write(comp .. "\n")) end
end
tail:kill()
tail:wait()
summary.stdin:close() -- sort sees the end of its input and answers
writer:await()

print(("followed %d lines; warnings and errors per component:"):format(seen))
for line in summary.stdout:lines() do
  local count, comp = line:match("^%s*(%d+) (%w+)$")
  print(("  %-6s %s"):format(comp, count))
  assert(tonumber(count) == expected[comp], comp .. ": count differs from what was written")
  expected[comp] = nil
end
assert(next(expected) == nil, "a component is missing from the summary")
assert(summary:wait() == 0)
assert(seen == LINES)
assert(fs.unlink(path))
print("summary checked")
