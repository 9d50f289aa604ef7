-- Cancelling thread jobs: queued jobs are removed, running ones interrupted
-- at the next instruction (even `while true do end`) or in a blocking wait;
-- the worker state stays usable. Closing a busy pool.
local crt = require "crt"
local th = require "tests.spec.thread_helper"

describe("cancelling thread jobs #tsan", function()
  after_each(th.clean)

  it("interrupts a running `while true do end`, and the worker serves again", function()
    local p = crt.thread.pool { size = 1 }
    local started = crt.channel()
    local t = p:run(function(ch)
      ch:send("started")
      while true do end
    end, started)
    assert.are.equal("started", started:recv())
    assert.is_true(t:cancel())
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.are.equal(crt.Cancelled, err)
    assert.are.equal("cancelled", t:status())
    -- Same (only) worker, same state: globals survive, no hook is left.
    assert.are.equal("usable", p:run(function()
      local n = 0
      for i = 1, 1e6 do n = n + i end
      return n > 0 and "usable"
    end):await())
    p:close()
  end)

  it("interrupts a job blocked in crt.sleep or a channel receive", function()
    local p = crt.thread.pool { size = 1 }
    local started = crt.channel()
    local s = p:run(function(ch) ch:send(1) crt.sleep(1000) end, started)
    started:recv()
    s:cancel()
    assert.has_error(function() s:await() end, crt.Cancelled)
    local never = crt.channel()
    local r = p:run(function(ch, n) ch:send(1) return n:recv() end, started, never)
    started:recv()
    r:cancel()
    assert.has_error(function() r:await() end, crt.Cancelled)
    assert.are.equal(3, p:run(function() return 3 end):await())
    p:close()
  end)

  it("removes a queued job: it never runs", function()
    local p = crt.thread.pool { size = 1 }
    local gate, ran = crt.channel(), crt.channel()
    local a = p:run(function(g) return g:recv() end, gate)
    local b = p:run(function(r) r:send("b ran") return 1 end, ran)
    crt.yield() -- both tasks have submitted their jobs
    b:cancel()
    gate:send("go")
    assert.are.equal("go", a:await())
    assert.are.equal("cancelled", b:status())
    -- A later job on the same single worker runs after b would have.
    assert.are.equal("c", p:run(function() return "c" end):await())
    assert.is_nil(ran:try_recv())
    p:close()
  end)

  it("lets the job catch crt.Cancelled to clean up", function()
    local p = crt.thread.pool { size = 1 }
    local started, cleaned = crt.channel(), crt.channel()
    local t = p:run(function(ch, out)
      ch:send(1)
      local _, e = pcall(function() while true do end end)
      out:send(e == crt.Cancelled and "cleaned" or "other")
    end, started, cleaned)
    started:recv()
    t:cancel()
    assert.are.equal("cleaned", cleaned:recv())
    p:close()
  end)

  it("is cancelled by crt.race when another task wins", function()
    local job = crt.thread.run(function() while true do end end)
    local v = crt.race { job, function() crt.sleep(0.01) return "timer" end }
    assert.are.equal("timer", v)
    assert.has_error(function() job:await() end, crt.Cancelled)
  end)

  it("cancels the jobs of a map whose task is cancelled", function()
    local p = crt.thread.pool { size = 2 }
    local started = crt.channel()
    local t = crt.spawn(function()
      return p:map(function(x)
        started:send(x)
        while true do end
      end, th.range(10), { chunk = 1 })
    end)
    started:recv()
    t:cancel()
    assert.has_error(function() t:await() end, crt.Cancelled)
    assert.are.equal("ok", p:run(function() return "ok" end):await())
    p:close()
  end)
end)

describe("closing a busy pool #tsan", function()
  after_each(th.clean)

  it("drops queued jobs and interrupts running ones", function()
    local p = crt.thread.pool { size = 1 }
    local started = crt.channel()
    local running = p:run(function(ch) ch:send(1) while true do end end, started)
    local queued = p:run(function() return "never" end)
    started:recv()
    local mapper = crt.spawn(function() return p:map(function(x) return x end, th.range(10)) end)
    crt.yield()
    p:close()
    assert.has_error(function() running:await() end, crt.Cancelled)
    assert.has_error(function() queued:await() end, crt.Cancelled)
    assert.has_error(function() mapper:await() end, crt.Cancelled)
    assert.has_error(function() p:run(function() end) end, "pool:run: the pool is closed")
  end)

  it("stops a job that catches crt.Cancelled and loops again", function()
    local p = crt.thread.pool { size = 1 }
    local started = crt.channel()
    local t = p:run(function(ch)
      ch:send(1)
      while true do pcall(function() while true do end end) end
    end, started)
    started:recv()
    p:close() -- returns: the shutdown hook stays until the job ends
    assert.has_error(function() t:await() end, crt.Cancelled)
  end)
end)

describe("exiting with busy threads #tsan", function()
  local helper = require "tests.spec.helper"

  it("does not hang on a running job, a blocked job or a dedicated thread", function()
    local script = [[
      local ch = crt.channel()
      crt.thread.run(function() while true do end end)
      crt.thread.run(function(c) c:recv() end, ch)
      crt.thread.spawn(function() crt.parent:recv() end)
      local p = crt.thread.pool { size = 1 }
      for i = 1, 100 do p:run(function() while true do end end) end
      crt.sleep(0.05)
      crt.exit(0)
    ]]
    local code = helper.run(helper.crt .. " --threads 2 -e " .. helper.shell_quote(script))
    assert.are.equal(0, code)
  end)
end)

describe("crt.timeout around a job #tsan", function()
  it("cancels the job itself when given the task run returns", function()
    local pool = crt.thread.pool { size = 1 }
    local job = pool:run(function() while true do end end)
    assert.are.same({ nil, "timeout" }, { crt.timeout(0.05, job) })
    assert.are.equal("cancelled", job:status())
    -- the worker is free again
    assert.are.equal(3, pool:run(function() return 3 end):await())
    pool:close()
  end)
end)
