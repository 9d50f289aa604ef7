-- The end of children: crt exits with children still running and takes
-- them down; a parent killed with SIGKILL takes its children with it; a
-- failure nobody awaited is reported; no zombie or orphan is left.
-- Scripts run as separate crt processes (helper.run).
local helper = require "tests.spec.helper"

local q = helper.shell_quote

local function script(src)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local st = f:read("a")
  f:close()
  return not st:match("^%d+ %b() Z") -- a zombie is not alive
end

local function wait_gone(pids, seconds)
  local t0 = crt.now()
  while crt.now() - t0 < seconds do
    local any = false
    for _, p in ipairs(pids) do any = any or alive(p) end
    if not any then return true end
    crt.sleep(0.02)
  end
  return false
end

local function pids_of(out)
  local pids = {}
  for p in out:gmatch("child (%d+)") do pids[#pids + 1] = tonumber(p) end
  return pids
end

-- Start children that would sleep for a minute, report their pids once they
-- run, then end as `ending` says.
local function with_sleepers(ending)
  return script([[
local kids = {}
for i = 1, 3 do
  kids[i] = crt.process.spawn(function() crt.parent:send("up") crt.sleep(60) end)
end
for i = 1, 3 do assert(kids[i]:recv() == "up") print("child " .. kids[i].pid) end
io.stdout:flush()
]] .. ending)
end

local function children()
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  f = io.open(("/proc/self/task/%d/children"):format(pid))
  if not f then return {} end
  local list = {}
  for p in f:read("a"):gmatch("%d+") do list[#list + 1] = tonumber(p) end
  f:close()
  return list
end

describe("the end of child processes", function()
  after_each(helper.assert_clean)

  it("crt exits when its main chunk ends, killing children still running", function()
    local path = with_sleepers("")
    local t0 = crt.now()
    local code, out = helper.run(q(helper.crt) .. " " .. q(path))
    os.remove(path)
    assert.are.equal(0, code)
    assert.is_true(crt.now() - t0 < 20)
    local pids = pids_of(out)
    assert.are.equal(3, #pids)
    assert.is_true(wait_gone(pids, 5))
  end)

  it("crt.exit(n) ends crt with status n and takes the children down", function()
    local path = with_sleepers("crt.exit(3)")
    local code, out = helper.run(q(helper.crt) .. " " .. q(path))
    os.remove(path)
    assert.are.equal(3, code)
    assert.is_true(wait_gone(pids_of(out), 5))
  end)

  it("an error in the main chunk ends crt with status 1 and takes the children down", function()
    local path = with_sleepers("error('main failed')")
    local code, out, err = helper.run(q(helper.crt) .. " " .. q(path))
    os.remove(path)
    assert.are.equal(1, code)
    assert.matches("main failed", err)
    assert.is_true(wait_gone(pids_of(out), 5))
  end)

  it("a parent killed with SIGKILL takes its children with it", function()
    local path = with_sleepers("print('parent ready') io.stdout:flush() crt.sleep(60)")
    local outfile = os.tmpname()
    local cmd = ("%s %s > %s 2>&1 & p=$!; i=0; while [ $i -lt 400 ] && ! grep -q parent %s; do " ..
      "sleep 0.05; i=$((i+1)); done; kill -9 $p; wait $p 2>/dev/null; cat %s")
      :format(q(helper.crt), q(path), q(outfile), q(outfile), q(outfile))
    local _, out = helper.run(cmd)
    os.remove(path)
    os.remove(outfile)
    local pids = pids_of(out)
    assert.are.equal(3, #pids)
    assert.is_true(wait_gone(pids, 5), "children outlived their parent")
  end)

  it("reports a child failure that nobody awaited", function()
    local path = script([[
crt.process.spawn(function() error("nobody awaits this") end)
crt.sleep(0.01)
local c = crt.process.spawn(function() return 1 end)
c:await()
collectgarbage()
crt.sleep(0.5)
]])
    local code, _, err = helper.run(q(helper.crt) .. " " .. q(path))
    os.remove(path)
    assert.matches("crt: error in a child process that nobody awaited", err)
    assert.matches("nobody awaits this", err)
    assert.are.equal(1, code)
  end)

  it("does not report children it killed at exit, nor a child the script killed", function()
    local path = script([[
local c = crt.process.spawn(function() crt.sleep(60) end)
c:kill()
crt.spawn(function() crt.process.spawn(function() crt.sleep(60) end) end)
crt.sleep(0.2)
]])
    local code, _, err = helper.run(q(helper.crt) .. " " .. q(path))
    os.remove(path)
    assert.are.equal(0, code)
    assert.are.equal("", err)
  end)

  it("leaves no child process of this test process behind", function()
    local t0 = crt.now()
    while #children() > 0 and crt.now() - t0 < 10 do crt.sleep(0.01) end
    assert.are.same({}, children())
  end)
end)
