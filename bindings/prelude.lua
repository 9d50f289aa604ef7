-- prelude.lua - the parts of the crt API written in Lua on top of the C
-- primitives: crt.all, crt.race, crt.timeout and crt.group, and the runner
-- of the crt command line's chunks. Compiled into the library; runs once in
-- the runtime's state with the crt table as its argument.
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

-- The crt command line runs its -e chunks and its script, in order, in one
-- main task; the script gets the arguments.
local internal = {}

-- `crt -i`: each line runs as a task of its own and is awaited, so errors
-- are shown and tasks started by earlier lines keep running meanwhile.
local function repl(readline)
  io.stdout:write("crt ", crt.version, " (", crt.lua_version, ", libuv ", crt.uv_version,
    ")\n")
  -- Ctrl-C cancels the line that is running, or starts a fresh prompt; it
  -- does not end the session (Ctrl-D does).
  local current
  local sigint = crt.signal and crt.signal.on("SIGINT", function()
    if current and not current:done() then
      current:cancel()
    else
      io.stdout:write("\n> ")
      io.stdout:flush()
    end
  end)
  while true do
    local line = readline("> ")
    if line == nil then
      io.stdout:write("\n")
      if sigint then sigint:stop() end
      return
    end
    local f, err = load("return " .. line, "=stdin")
    if not f then
      local chunk = line
      f, err = load(chunk, "=stdin")
      -- An incomplete statement: keep reading lines.
      while not f and err:sub(-5) == "<eof>" do
        local more = readline(">> ")
        if more == nil then break end
        chunk = chunk .. "\n" .. more
        f, err = load(chunk, "=stdin")
      end
    end
    if f then
      current = spawn(f)
      local r = pack(pcall(current.await, current))
      current = nil
      if not r[1] and r[2] == Cancelled then
        io.stderr:write("interrupted\n")
      elseif not r[1] then
        io.stderr:write(tostring(r[2]), "\n")
      elseif r.n > 1 then
        for i = 2, r.n do r[i] = tostring(r[i]) end
        io.stdout:write(table.concat(r, "\t", 2, r.n), "\n")
      end
    else
      io.stderr:write(err, "\n")
    end
  end
end

-- Calling a chunk through the result of a call gives it no name, so that
-- tracebacks say "in main chunk", as lua does.
local function chunk(f) return f end

function internal.main(chunks, readline, ...)
  local n = #chunks
  for i = 1, n - 1 do chunk(chunks[i])() end
  if n > 0 then chunk(chunks[n])(...) end
  if readline then
    repl(readline)
    -- End of input ends the session, like lua -i, even with tasks running.
    crt.exit()
  end
end
debug.getregistry()["crt.internal"] = internal
