-- crt.process.pool: run, map, imap, init, errors, crash recovery (a job
-- that crashes its worker fails alone and the pool goes on),
-- max_jobs_per_worker, cancellation, close, bad input.
-- Functions sent to workers use the global `crt` (see process_spawn_spec).
local helper = require "tests.spec.helper"

local crashlib = helper.build_dir .. "/crashlib.so"

local function mypid()
  local f = io.open("/proc/self/stat")
  local pid = f:read("n")
  f:close()
  return pid
end

describe("crt.process.pool", function()
  after_each(helper.assert_clean)

  it("runs jobs in worker processes and returns tasks", function()
    local pool = crt.process.pool { size = 2 }
    local t = pool:run(function(a, b) return a * b, "s" end, 6, 7)
    assert.are.equal("crt.task", getmetatable(t).__name)
    assert.are.same({ 42, "s" }, { t:await() })
    local pid = pool:run(mypid):await()
    assert.are_not.equal(mypid(), pid)
    pool:close()
  end)

  it("runs jobs in parallel on its workers", function()
    local pool = crt.process.pool { size = 2 }
    -- Each job marks its arrival and waits (bounded) for the other's mark:
    -- both succeed only if the two jobs run at the same time.
    local dir = os.tmpname()
    os.remove(dir)
    assert(crt.fs.mkdir(dir))
    local function meet(me, other, where)
      local f = io.open(where .. "/" .. me, "w")
      f:close()
      for _ = 1, 2000 do
        local o = io.open(where .. "/" .. other)
        if o then
          o:close()
          return mypid()
        end
        crt.sleep(0.005)
      end
      return nil
    end
    local a = pool:run(meet, "a", "b", dir)
    local b = pool:run(meet, "b", "a", dir)
    local pa, pb = a:await(), b:await()
    assert.is_not_nil(pa)
    assert.is_not_nil(pb)
    assert.are_not.equal(pa, pb)
    pool:close()
    os.remove(dir .. "/a")
    os.remove(dir .. "/b")
    crt.fs.rmdir(dir)
  end)

  it("maps in order, chunked", function()
    local pool = crt.process.pool { size = 2 }
    local list = {}
    for i = 1, 101 do list[i] = i end
    assert.are.same({}, pool:map(function(x) return x end, {}))
    local out = pool:map(function(x) return x * x end, list)
    assert.are.equal(101, #out)
    for i = 1, 101 do assert.are.equal(i * i, out[i]) end
    out = pool:map(function(x) return -x end, list, { chunk = 7 })
    for i = 1, 101 do assert.are.equal(-i, out[i]) end
    out = pool:map(function(x) if x % 2 == 0 then return nil end return x end, { 1, 2, 3 })
    assert.are.same({ 1, nil, 3 }, out)
    pool:close()
  end)

  it("imaps: every index once, as results complete", function()
    local pool = crt.process.pool { size = 2 }
    local list = { 0.2, 0.01, 0.01, 0.01 }
    local seen, order = {}, {}
    for i, v in pool:imap(function(s) crt.sleep(s) return s * 100 end, list, { chunk = 1 }) do
      assert.is_nil(seen[i])
      seen[i] = v
      order[#order + 1] = i
    end
    assert.are.same({ 20, 1, 1, 1 }, seen)
    assert.are_not.equal(1, order[1]) -- the slow first item did not hold the others
    pool:close()
  end)

  it("imap: breaking out of the loop cancels the rest", function()
    local pool = crt.process.pool { size = 1 }
    local n = 0
    for _ in pool:imap(function(x) crt.sleep(0.05) return x end, { 1, 2, 3, 4, 5, 6 }, { chunk = 1 }) do
      n = n + 1
      if n == 2 then break end
    end
    assert.are.equal(2, n)
    pool:close()
  end)

  it("runs init once in each worker, and workers keep their state", function()
    local pool = crt.process.pool {
      size = 1, init = function() _G.counter = 100 end,
    }
    local function bump()
      _G.counter = _G.counter + 1
      return _G.counter
    end
    assert.are.equal(101, pool:run(bump):await())
    assert.are.equal(102, pool:run(bump):await())
    pool:close()
  end)

  it("re-raises a job's error with the worker's traceback; the worker stays", function()
    local pool = crt.process.pool { size = 1 }
    local pid = pool:run(mypid):await()
    local t = pool:run(function()
      local function failing_job() error("job failed") end
      failing_job()
    end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("job failed", err)
    assert.matches("failing_job", err)
    assert.are.equal(pid, pool:run(mypid):await())
    local e = select(2, pcall(pool.map, pool, function(x)
      if x == 3 then error("item three") end
      return x
    end, { 1, 2, 3, 4 }))
    assert.matches("item three", e)
    pool:close()
  end)

  it("fails only the job whose worker crashed, and replaces the worker", function()
    local pool = crt.process.pool { size = 2 }
    local before = pool:run(mypid):await()
    local slow = pool:run(function() crt.sleep(0.3) return "slow ok" end)
    local t = pool:run(function(path)
      assert(package.loadlib(path, "luaopen_crashlib"))().segv()
    end, crashlib)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("pool:run: the worker process running this job died: child process %d+ " ..
      "was killed by signal SIGSEGV %(11%)", err)
    assert.are.equal("slow ok", slow:await())
    -- The pool goes on: every following job succeeds.
    for i = 1, 6 do assert.are.equal(i, pool:run(function(x) return x end, i):await()) end
    assert.is_number(before)
    -- A worker that exits also fails only its job.
    local x = pool:run(function() os.exit(9) end)
    assert.matches("exited with code 9", select(2, pcall(x.await, x)))
    assert.are.equal("after", pool:run(function() return "after" end):await())
    pool:close()
  end)

  it("recycles workers after max_jobs_per_worker jobs", function()
    local pool = crt.process.pool { size = 1, max_jobs_per_worker = 2 }
    local pids = {}
    for i = 1, 6 do pids[i] = pool:run(mypid):await() end
    assert.are.equal(pids[1], pids[2])
    assert.are_not.equal(pids[2], pids[3])
    assert.are.equal(pids[3], pids[4])
    assert.are_not.equal(pids[4], pids[5])
    assert.are.equal(pids[5], pids[6])
    pool:close()
  end)

  it("reports an init that fails, for every job", function()
    local pool = crt.process.pool { size = 1, init = function() error("bad init") end }
    for _ = 1, 2 do
      local t = pool:run(function() return 1 end)
      local ok, err = pcall(t.await, t)
      assert.is_false(ok)
      assert.matches("pool:run: init failed in worker process %d+: .*bad init", err)
    end
    pool:close()
  end)

  it("stops a running job's worker when its task is cancelled", function()
    local pool = crt.process.pool { size = 1 }
    local t = pool:run(function() crt.sleep(30) end)
    crt.sleep(0.1)
    local t0 = crt.now()
    t:cancel()
    assert.are.equal(crt.Cancelled, select(2, pcall(t.await, t)))
    assert.are.equal("ok", pool:run(function() return "ok" end):await())
    assert.is_true(crt.now() - t0 < 5)
    pool:close()
  end)

  it("queues jobs beyond its size", function()
    local pool = crt.process.pool { size = 2 }
    local tasks = {}
    for i = 1, 10 do tasks[i] = pool:run(function(x) crt.sleep(0.01) return x end, i) end
    for i = 1, 10 do assert.are.equal(i, tasks[i]:await()) end
    pool:close()
  end)

  it("close waits for running jobs; run/map/imap after close raise", function()
    local pool = crt.process.pool { size = 1 }
    local t = pool:run(function() crt.sleep(0.2) return "finished" end)
    crt.yield()
    pool:close()
    assert.are.equal("done", t:status())
    assert.are.equal("finished", t:await())
    assert.has_error(function() pool:run(print) end, "pool:run: the pool is closed")
    assert.has_error(function() pool:map(print, {}) end, "pool:map: the pool is closed")
    assert.has_error(function() pool:imap(print, {}) end, "pool:imap: the pool is closed")
    pool:close() -- again: nothing
  end)

  it("refuses bad sizes and options", function()
    for _, size in ipairs({ 0, -1, 1.5 }) do
      local ok, err = pcall(crt.process.pool, { size = size })
      assert.is_false(ok)
      assert.matches("crt.process.pool: bad argument #1 %(size must be a positive integer", err)
    end
    assert.has_error(function() crt.process.pool { size = "2" } end)
    assert.has_error(function() crt.process.pool { init = 3 } end,
      "crt.process.pool: bad argument #1 (init must be a function, got number)")
    assert.has_error(function() crt.process.pool { max_jobs_per_worker = 0 } end)
    assert.has_error(function() crt.process.pool(5) end,
      "crt.process.pool: bad argument #1 (table expected, got number)")
    local pool = crt.process.pool { size = 1 }
    assert.has_error(function() pool:run(42) end, "pool:run: bad argument #1 (function expected, got number)")
    assert.has_error(function() pool:map(print, 3) end, "pool:map: bad argument #2 (table expected, got number)")
    assert.has_error(function() pool:map(print, {}, { chunk = 0 }) end)
    pool:close()
  end)

  it("names arguments and results that cannot cross", function()
    local pool = crt.process.pool { size = 1 }
    local t = pool:run(function() end, 1, io.stdout)
    assert.matches("pool:run: cannot send argument #3 %(userdata%)", select(2, pcall(t.await, t)))
    t = pool:run(function() return io.stdout end)
    assert.matches("cannot send result #1 %(userdata%)", select(2, pcall(t.await, t)))
    local list = { 1, 2, 3, io.stdout }
    local ok, err = pcall(pool.map, pool, function(x) return x end, list, { chunk = 2 })
    assert.is_false(ok)
    assert.matches("pool:map: cannot send argument #2 %[4%] %(userdata%)", err)
    -- The worker is still fine.
    assert.are.equal(5, pool:run(function() return 5 end):await())
    pool:close()
  end)
end)
