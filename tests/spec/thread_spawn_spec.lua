-- Dedicated threads: crt.thread.spawn(fn, ...) -> worker, its mailbox
-- (worker:send/recv, crt.parent:send/recv in the worker), await, cancel,
-- close; the worker-side crt API.
local crt = require "crt"
local th = require "tests.spec.thread_helper"

describe("crt.thread.spawn #tsan", function()
  after_each(th.clean)

  it("runs fn(...) on its own thread and awaits its results", function()
    local w = crt.thread.spawn(function(a, b) return a + b, crt.thread.id() end, 1, 2)
    local sum, id = w:await()
    assert.are.equal(3, sum)
    assert.is_true(id > 0)
    assert.are.equal("done", w:status())
  end)

  it("talks through its mailbox both ways", function()
    local w = crt.thread.spawn(function()
      local total = 0
      for v in function() return crt.parent:recv() end do
        total = total + v
        crt.parent:send(total)
      end
      return "closed at " .. total
    end)
    for i = 1, 100 do
      w:send(i)
      assert.are.equal(i * (i + 1) // 2, w:recv())
    end
    w:close() -- crt.parent:recv() returns nil in the worker
    assert.are.equal("closed at 5050", w:await())
    assert.is_nil(w:recv()) -- the worker's mailbox closed when fn returned
  end)

  it("re-raises the worker's error with its traceback", function()
    local w = crt.thread.spawn(function() error("worker failed") end)
    local ok, err = pcall(w.await, w)
    assert.is_false(ok)
    assert.matches("worker failed", err)
    assert.matches("stack traceback", err)
  end)

  it("cancels a worker that loops or waits", function()
    local w = crt.thread.spawn(function()
      crt.parent:send("looping")
      while true do end
    end)
    assert.are.equal("looping", w:recv())
    w:cancel()
    assert.has_error(function() w:await() end, crt.Cancelled)
    local w2 = crt.thread.spawn(function() return crt.parent:recv() end)
    w2:cancel()
    assert.has_error(function() w2:await() end, crt.Cancelled)
    local w3 = crt.thread.spawn(function() crt.sleep(1000) end)
    w3:cancel()
    assert.has_error(function() w3:await() end, crt.Cancelled)
  end)

  it("joins its thread when it ends", function()
    local before = crt.thread.stats().threads
    local w = crt.thread.spawn(function() return 1 end)
    w:await()
    assert.are.equal(before, crt.thread.stats().threads)
  end)

  it("has the worker-side API", function()
    local w = crt.thread.spawn(function()
      local t0 = crt.now()
      crt.sleep(0.01)
      local slept = crt.now() - t0
      local c = require "crt"
      return slept >= 0.01, c == crt, type(crt.codec.encode), tostring(crt.Cancelled),
        crt.thread.run == nil, type(crt.channel), type(crt.select)
    end)
    assert.are.same({ true, true, "function", "crt.Cancelled", true, "function", "function" },
      { w:await() })
  end)

  it("refuses crt.parent in a pool job, clearly", function()
    local t = crt.thread.run(function() return crt.parent:recv() end)
    local ok, err = pcall(t.await, t)
    assert.is_false(ok)
    assert.matches("crt.parent:recv: no parent", err, 1, true)
  end)

  it("checks its arguments", function()
    assert.has_error(function() crt.thread.spawn(42) end,
      "crt.thread.spawn: bad argument #1 (function expected, got number)")
    local conn = io.stdout
    local ok, err = pcall(crt.thread.spawn, function() return conn end)
    assert.is_false(ok)
    assert.matches("crt.thread.spawn: cannot send argument #1 upvalue 'conn' (userdata)", err, 1, true)
    local w = crt.thread.spawn(function() end)
    assert.has_error(function() w:send(nil) end, "worker:send: bad argument #2 (value expected, got nil)")
    w:await()
  end)

  it("runs many dedicated threads at once", function()
    local ws = {}
    for i = 1, 16 do ws[i] = crt.thread.spawn(function(x) crt.sleep(0.01) return x * x end, i) end
    local sum = 0
    for i = 1, 16 do sum = sum + ws[i]:await() end
    assert.are.equal(1496, sum)
  end)
end)
