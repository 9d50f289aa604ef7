-- process.lua - crt.process.pool: a pool of worker processes on top of
-- crt.process.spawn and the child objects' messages. Compiled into the
-- library; loaded by bindings/process.c on the first call of
-- crt.process.pool, with the crt table and the number of cores, and returns
-- the constructor.
--
-- A worker is a child running `worker` below: it runs init once, then
-- answers jobs from its parent until the parent closes its side. A job is
-- one message (kind, fn, ...) and one reply (true, results...) or (false,
-- err). A job whose worker dies (crash, kill, exit) fails with a clear error
-- and the worker's slot is free again: the next job starts a new worker.
-- Loop thread only (the runtime's own state).
local lib, ncpu = ...

local spawn_task, channel, spawn_child = lib.spawn, lib.channel, lib.process.spawn
local Cancelled = lib.Cancelled
local format, pack, unpack, move = string.format, table.pack, table.unpack, table.move
local type, error, pcall, setmetatable, getmetatable = type, error, pcall, setmetatable, getmetatable
local tostring, ceil, min, mtype = tostring, math.ceil, math.min, math.type

-- The body of every worker process. It is sent to each child as its
-- function, so it must not refer to anything of this chunk (upvalues are
-- copied, and the crt table cannot be): only the child's globals (crt is
-- the child's own) and standard functions.
local function worker(init)
  local parent = crt.parent
  local sendv, recv = parent._sendv, parent.recv
  local unpack_ = table.unpack
  local function handler(e)
    if type(e) == "string" or type(e) == "number" then return debug.traceback(tostring(e), 2) end
    return e
  end
  if init then
    local ok, err = xpcall(init, handler)
    if not ok then return "crt.process.pool: init failed", err end
  end
  local function reply(ok, ...)
    local sent, err = pcall(sendv, parent, "crt.process.pool: cannot send result", -1, true, ok, ...)
    if not sent then sendv(parent, "", 0, false, false, err) end
  end
  while true do
    local job = table.pack(recv(parent))
    local kind = job[1]
    if kind == nil then return end
    local fn = job[2]
    if kind == 1 then
      reply(xpcall(fn, handler, unpack_(job, 3, job.n)))
    else
      -- A part of a map: items[s..e] (the list's own indices).
      local items, s, e = job[3], job[4], job[5]
      local out = {}
      local ok, err = xpcall(function()
        for i = s, e do out[i] = fn(items[i]) end
      end, handler)
      if ok then reply(true, out) else reply(false, err) end
    end
  end
end

local Pool = {}
Pool.__index = Pool

local function start_worker(pool)
  local child, err = spawn_child(worker, pool.init)
  if not child then error(err, 0) end
  return { child = child, jobs = 0 }
end

-- Retire a worker: its recv returns nil, it returns, the process exits.
local function retire(pool, w)
  w.child:close()
  pool.retired[w.child] = true
end

-- Give back a worker (or, w == nil, the slot of one that died or retired):
-- to the first job waiting for one, else to the idle list.
local function release(pool, w)
  if w and pool.max_jobs and w.jobs >= pool.max_jobs then
    retire(pool, w)
    w = nil
  end
  local q = pool.waiting
  if q.first <= q.last then
    local ch = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    if not w then
      ch:send(false) -- the waiter starts a new worker in this slot
    else
      ch:send(w)
    end
    return
  end
  if not w then
    pool.nworkers = pool.nworkers - 1
  elseif pool.closed then
    pool.nworkers = pool.nworkers - 1
    retire(pool, w)
  else
    pool.idle[#pool.idle + 1] = w
  end
end

local function new_slot(pool)
  local ok, w = pcall(start_worker, pool)
  if not ok then
    pool.nworkers = pool.nworkers - 1
    error(w, 0)
  end
  return w
end

local function acquire(pool)
  local idle = pool.idle
  while #idle > 0 do
    local w = idle[#idle]
    idle[#idle] = nil
    if w.child:_alive() then return w end
    pool.nworkers = pool.nworkers - 1 -- died while idle: forget it
  end
  if pool.nworkers < pool.size then
    pool.nworkers = pool.nworkers + 1
    return new_slot(pool)
  end
  local ch = channel(1)
  local q = pool.waiting
  q.last = q.last + 1
  q[q.last] = ch
  local ok, w = pcall(ch.recv, ch)
  if not ok then
    -- Cancelled while waiting: leave the queue, pass on what came meanwhile.
    for i = q.first, q.last do
      if q[i] == ch then
        move(q, i + 1, q.last + 1, i)
        q.last = q.last - 1
        break
      end
    end
    local got = ch:try_recv()
    if got ~= nil then release(pool, got or nil) end
    error(w, 0)
  end
  if w == false then return new_slot(pool) end
  return w
end

local function died(fname, child)
  local r = pack(pcall(child.await, child))
  if r[1] and r[2] == "crt.process.pool: init failed" then
    return format("%s: init failed in worker process %d: %s", fname, child.pid, tostring(r[3]))
  elseif r[1] then
    return format("%s: worker process %d stopped before answering", fname, child.pid)
  end
  return format("%s: the worker process running this job died: %s", fname, tostring(r[2]))
end

local function job_end(pool)
  pool.active = pool.active - 1
  if pool.active == 0 and pool.on_idle then pool.on_idle:try_send(true) end
end

-- Run one job on a worker: its results, or its error raised.
local function exec(pool, fname, kind, fn, ...)
  pool.active = pool.active + 1
  local ok, w = pcall(acquire, pool)
  if not ok then
    job_end(pool)
    error(w, 0)
  end
  local child = w.child
  local sent, err = pcall(child._sendv, child, fname .. ": cannot send", -1, false, kind, fn, ...)
  if not sent or not err then
    -- Unsendable (raised: the worker is fine) or the worker is gone.
    if sent then
      release(pool, nil)
      job_end(pool)
      error(died(fname, child), 0)
    end
    release(pool, w)
    job_end(pool)
    error(err, 0)
  end
  w.jobs = w.jobs + 1
  local res = pack(pcall(child.recv, child))
  if not res[1] then
    if res[2] == Cancelled then
      -- The job cannot be taken back from the worker: stop the worker.
      child:kill("SIGKILL")
      release(pool, nil)
    else
      release(pool, w) -- the results could not be decoded
    end
    job_end(pool)
    error(res[2], 0)
  end
  if res.n < 2 or res[2] == nil then
    local msg = died(fname, child)
    release(pool, nil)
    job_end(pool)
    error(msg, 0)
  end
  release(pool, w)
  job_end(pool)
  if res[2] then return unpack(res, 3, res.n) end
  error(res[3], 0)
end

-- For the chunk tasks of map and imap: never raise (a failed task nobody
-- awaits would be reported); return ok, results.
local function pexec(...) return pcall(exec, ...) end

local function check_open(pool, fname)
  if getmetatable(pool) ~= Pool then
    error(format("%s: bad argument #1 (pool expected, got %s)", fname, type(pool)), 3)
  end
  if pool.closed then error(fname .. ": the pool is closed", 3) end
end

local function check_fn(fname, fn)
  if type(fn) ~= "function" then
    error(format("%s: bad argument #1 (function expected, got %s)", fname,
      fn == nil and "no value" or type(fn)), 3)
  end
end

function Pool:run(fn, ...)
  check_open(self, "pool:run")
  check_fn("pool:run", fn)
  return spawn_task(exec, self, "pool:run", 1, fn, ...)
end

-- The chunks of list, each a task running part of it on a worker.
local function chunks(pool, fname, fn, list, opts)
  check_open(pool, fname)
  check_fn(fname, fn)
  if type(list) ~= "table" then
    error(format("%s: bad argument #2 (table expected, got %s)", fname, type(list)), 3)
  end
  local n = #list
  local chunk
  if opts ~= nil and type(opts) ~= "table" then
    error(format("%s: bad argument #3 (table expected, got %s)", fname, type(opts)), 3)
  end
  if opts and opts.chunk ~= nil then
    chunk = opts.chunk
    if mtype(chunk) ~= "integer" or chunk < 1 then
      error(format("%s: bad argument #3 (opts.chunk must be a positive integer)", fname), 3)
    end
  else
    -- Four chunks per worker: every worker stays busy while the last
    -- chunks run, and a job carries many items when the list is long.
    chunk = math.max(1, ceil(n / (pool.size * 4)))
  end
  -- Items keep their indices in list, so that an error names the item.
  local tasks = {}
  for s = 1, n, chunk do
    local e = min(n, s + chunk - 1)
    local items = move(list, s, e, s, {})
    tasks[#tasks + 1] = spawn_task(pexec, pool, fname, 2, fn, items, s, e)
  end
  return tasks, chunk, n
end

local function cancel_all(tasks, from)
  for i = from or 1, #tasks do tasks[i]:cancel() end
end

function Pool:map(fn, list, opts)
  local tasks, chunk, n = chunks(self, "pool:map", fn, list, opts)
  local out = {}
  for k = 1, #tasks do
    local t = tasks[k]
    local aw = pack(pcall(t.await, t))
    if not aw[1] then -- this task was cancelled while waiting
      cancel_all(tasks, k)
      error(aw[2], 0)
    end
    local ok, res = aw[2], aw[3]
    if not ok then
      cancel_all(tasks, k + 1)
      error(res, 0)
    end
    for i = (k - 1) * chunk + 1, min(n, k * chunk) do out[i] = res[i] end
  end
  return out
end

function Pool:imap(fn, list, opts)
  local ch = channel()
  local tasks, chunk, n = chunks(self, "pool:imap", fn, list, opts)
  -- Each chunk's results go to ch as they complete.
  local notify = {}
  for k = 1, #tasks do
    local t = tasks[k]
    notify[k] = spawn_task(function()
      ch:send({ k, t:await() })
    end)
  end
  local idx, vals, pos, count, left = {}, {}, 0, 0, #tasks
  local function stop()
    cancel_all(tasks)
    cancel_all(notify)
  end
  local function iter()
    while true do
      if pos < count then
        pos = pos + 1
        return idx[pos], vals[pos]
      end
      if left == 0 then return nil end
      local ok, r = pcall(ch.recv, ch)
      if not ok then
        stop()
        error(r, 0)
      end
      left = left - 1
      if not r[2] then
        stop()
        error(r[3], 0)
      end
      local s, res = (r[1] - 1) * chunk + 1, r[3]
      pos, count = 0, 0
      for i = s, min(n, s + chunk - 1) do
        count = count + 1
        idx[count], vals[count] = i, res[i]
      end
    end
  end
  -- The closing value of a generic for: breaking out of the loop cancels
  -- the chunks not yet done.
  return iter, nil, nil, setmetatable({}, { __close = stop })
end

-- Close: no new jobs; the ones running finish; then the workers exit and
-- close waits for them.
function Pool:close()
  if getmetatable(self) ~= Pool then
    error(format("pool:close: bad argument #1 (pool expected, got %s)", type(self)), 2)
  end
  if self.closed then return end
  self.closed = true
  if self.active > 0 then
    self.on_idle = channel(1)
    self.on_idle:recv()
  end
  for i = #self.idle, 1, -1 do
    retire(self, self.idle[i])
    self.idle[i] = nil
  end
  self.nworkers = 0
  for child in pairs(self.retired) do
    pcall(child.await, child)
  end
end

function Pool:__gc()
  if not self.closed then
    for _, w in ipairs(self.idle) do pcall(w.child.close, w.child) end
  end
end

function Pool:__tostring()
  return format("crt.process.pool: %d workers of %d%s", self.nworkers, self.size,
    self.closed and " (closed)" or "")
end

local function positive(opts, key)
  local v = opts[key]
  if v ~= nil and (mtype(v) ~= "integer" or v < 1) then
    error(format("crt.process.pool: bad argument #1 (%s must be a positive integer, got %s)",
      key, tostring(v)), 3)
  end
  return v
end

return function(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(format("crt.process.pool: bad argument #1 (table expected, got %s)", type(opts)), 2)
  end
  local size = positive(opts, "size") or ncpu
  local max_jobs = positive(opts, "max_jobs_per_worker")
  if opts.init ~= nil and type(opts.init) ~= "function" then
    error(format("crt.process.pool: bad argument #1 (init must be a function, got %s)",
      type(opts.init)), 2)
  end
  return setmetatable({
    size = size, init = opts.init, max_jobs = max_jobs, nworkers = 0, active = 0,
    idle = {}, waiting = { first = 1, last = 0 }, retired = setmetatable({}, { __mode = "k" }),
    closed = false,
  }, Pool)
end
