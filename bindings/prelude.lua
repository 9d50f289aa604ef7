-- prelude.lua - the parts of the crt API written in Lua on top of the C
-- primitives: crt.all, crt.race, crt.timeout and crt.group. Compiled into
-- the library; runs once in every runtime's state (crt binary, embedding
-- hosts, module mode) with the crt table as its argument. (The crt command
-- line's own runner and prompt live in cli/runner.lua.)
--
-- All four wait through one primitive, notify(task, channel, tag), which
-- offers tag to the channel when the task ends (at once if it has ended), so
-- waiting for n tasks costs O(n), not O(n^2).
local crt = ...

local spawn, channel, select_ = crt.spawn, crt.channel, crt.select
local notify, observe, istask = crt._notify, crt._observe, crt._istask
local Cancelled = crt.Cancelled
local pack, error, type, pcall = table.pack, error, type, pcall
local format = string.format
crt._notify, crt._observe, crt._istask = nil, nil, nil

-- A list of tasks or functions: check all entries first, then start the
-- functions, so a bad entry starts nothing.
local function totasks(fname, list)
  if type(list) ~= "table" then
    error(format("%s: bad argument #1 (table expected, got %s)", fname, type(list)), 3)
  end
  local n = #list
  for i = 1, n do
    local x = list[i]
    if type(x) ~= "function" and not istask(x) then
      error(format("%s: bad argument #1 (entry %d is a %s, task or function expected)",
        fname, i, type(x)), 3)
    end
  end
  local tasks = {}
  for i = 1, n do
    local x = list[i]
    tasks[i] = type(x) == "function" and spawn(x) or x
  end
  return tasks, n
end

local function cancel_others(tasks, except)
  for i = 1, #tasks do
    if i ~= except then tasks[i]:cancel() end
  end
end

local function recv(ch) return ch:recv() end

function crt.all(list)
  local tasks, n = totasks("crt.all", list)
  local results = {}
  if n == 0 then return results end
  local ch = channel()
  for i = 1, n do notify(tasks[i], ch, i) end
  for _ = 1, n do
    local ok, i = pcall(recv, ch)
    if not ok then -- this task was cancelled while waiting
      cancel_others(tasks)
      error(i, 0)
    end
    local t = tasks[i]
    if t:status() == "done" then
      results[i] = pack(t:await())
    else
      cancel_others(tasks, i)
      t:await() -- re-raises its error (or crt.Cancelled)
    end
  end
  return results
end

function crt.race(list)
  local tasks, n = totasks("crt.race", list)
  if n == 0 then error("crt.race: bad argument #1 (empty list)", 2) end
  local ch = channel()
  for i = 1, n do notify(tasks[i], ch, i) end
  local ok, i = pcall(recv, ch)
  if not ok then
    cancel_others(tasks)
    error(i, 0)
  end
  cancel_others(tasks, i)
  return tasks[i]:await()
end

function crt.timeout(seconds, fn, ...)
  if type(seconds) ~= "number" or seconds ~= seconds then
    error(format("crt.timeout: bad argument #1 (number expected, got %s)",
      seconds ~= seconds and "nan" or type(seconds)), 2)
  end
  local t
  if istask(fn) then
    t = fn -- an existing task (a thread job, say): it is the one cancelled on the deadline
  elseif type(fn) == "function" then
    t = spawn(fn, ...)
  else
    error(format("crt.timeout: bad argument #2 (function or task expected, got %s)", type(fn)), 2)
  end
  local ch = channel()
  notify(t, ch, 1)
  local ok, i = pcall(select_, { { ch, "recv" }, timeout = seconds })
  if not ok then -- this task was cancelled while waiting
    t:cancel()
    error(i, 0)
  end
  if i == nil then
    -- The deadline passed: cancel fn's task and wait for its cleanup, so
    -- that nothing of it runs after crt.timeout has returned.
    t:cancel()
    local done, err = pcall(t.await, t)
    if not done and err == Cancelled and not t:done() then
      error(err, 0) -- this task was cancelled during the wait
    elseif not done and err ~= Cancelled then
      error(err, 0) -- fn failed while cleaning up
    end
    return nil, "timeout"
  end
  return t:await()
end

function crt.group(body)
  if type(body) ~= "function" then
    error(format("crt.group: bad argument #1 (function expected, got %s)", type(body)), 2)
  end
  local ch = channel()
  local children, pending, nextid, finished = {}, 0, 0, false
  local failed, first_err = false, nil
  local g = {}

  local function fail(err)
    if failed then return end
    failed, first_err = true, err
    for _, c in pairs(children) do c:cancel() end
  end

  function g.spawn(self, fn, ...)
    if self ~= g then
      error("group:spawn: call it as g:spawn(fn, ...)", 2)
    end
    if finished then
      error("group:spawn: the group has finished", 2)
    end
    if type(fn) ~= "function" then
      error(format("group:spawn: bad argument #1 (function expected, got %s)", type(fn)), 2)
    end
    local t = spawn(fn, ...)
    nextid = nextid + 1
    children[nextid] = t
    pending = pending + 1
    notify(t, ch, nextid)
    if failed then t:cancel() end
    return t
  end

  local res = pack(pcall(body, g))
  if not res[1] then fail(res[2]) end
  while pending > 0 do
    local ok, id = pcall(recv, ch)
    if not ok then
      fail(id) -- cancelled while waiting: cancel the children, wait for them
    else
      pending = pending - 1
      local t = children[id]
      children[id] = nil
      if t:status() == "failed" and not failed then
        -- The first failure is re-raised; later ones stay unobserved and
        -- are reported as errors nobody awaited, so none is lost.
        observe(t)
        local _, err = pcall(t.await, t)
        fail(err)
      end
    end
  end
  finished = true
  if failed then error(first_err, 0) end
  return table.unpack(res, 2, res.n)
end
