-- W2 in plain Lua 5.4: the same ping-pong on coroutines, with the small
-- scheduler and channel a Lua programmer would write for it (no C, no libuv).
--
-- The scheduler is a FIFO of ready coroutines with the value each one is
-- resumed with (two parallel arrays, so no table is made per wake-up). A
-- channel holds a ring of up to `cap` buffered values and FIFOs of parked
-- receivers and of parked senders with their values. As in Go, a send that
-- finds a parked receiver hands the value over and carries on without
-- yielding; a receive that finds a parked sender takes its value (through the
-- buffer when there is one) and makes the sender ready. The two hot paths are written out inline.
-- Usage: lua5.4 lua_coro.lua [N [capacity]]
local N = math.tointeger(tonumber(arg[1] or "1000000"))
local cap = math.tointeger(tonumber(arg[2] or "0"))

local resume, yield, running = coroutine.resume, coroutine.yield, coroutine.running

-- The ready queue: entries ready_head .. ready_tail - 1.
local ready_co, ready_val = {}, {}
local ready_head, ready_tail = 1, 1

local function wake(co, val)
  local t = ready_tail
  ready_co[t], ready_val[t] = co, val
  ready_tail = t + 1
end

local function spawn(fn)
  wake(coroutine.create(fn), nil)
end

local function run()
  while ready_head < ready_tail do
    local i = ready_head
    local co, val = ready_co[i], ready_val[i]
    ready_co[i], ready_val[i] = nil, nil
    ready_head = i + 1
    local ok, err = resume(co, val)
    if not ok then error(err, 0) end
  end
  ready_head, ready_tail = 1, 1
end

local Channel = {}
Channel.__index = Channel

local function channel(capacity)
  return setmetatable({
    cap = capacity,
    buf = {}, bhead = 0, count = 0, -- ring of buffered values, 0-based
    recvq = {}, rhead = 1, rtail = 1, -- parked receivers
    sendq = {}, sendv = {}, shead = 1, stail = 1, -- parked senders, values
  }, Channel)
end

-- Take the first parked sender, or nil; the queue indices restart at 1
-- whenever it empties, so they stay small.
local function pop_sender(ch)
  local h = ch.shead
  if h == ch.stail then return nil end
  local co, v = ch.sendq[h], ch.sendv[h]
  ch.sendq[h], ch.sendv[h] = nil, nil
  if h + 1 == ch.stail then
    ch.shead, ch.stail = 1, 1
  else
    ch.shead = h + 1
  end
  return co, v
end

function Channel:send(v)
  local h = self.rhead
  if h < self.rtail then -- a receiver is parked: hand the value over
    local q = self.recvq
    local co = q[h]
    q[h] = nil
    if h + 1 == self.rtail then
      self.rhead, self.rtail = 1, 1
    else
      self.rhead = h + 1
    end
    local t = ready_tail -- wake(co, v), inlined on this hot path
    ready_co[t], ready_val[t] = co, v
    ready_tail = t + 1
    return
  end
  local n = self.count
  if n < self.cap then -- room in the buffer
    self.buf[(self.bhead + n) % self.cap] = v
    self.count = n + 1
    return
  end
  local t = self.stail
  self.sendq[t], self.sendv[t] = running(), v
  self.stail = t + 1
  yield()
end

function Channel:recv()
  local n = self.count
  if n > 0 then
    local buf, h = self.buf, self.bhead
    local v = buf[h]
    local co, sv = pop_sender(self)
    if co then -- refill the slot just freed from the first parked sender
      buf[h] = sv
      self.bhead = (h + 1) % self.cap
      wake(co, nil)
    else
      buf[h] = nil
      self.bhead = (h + 1) % self.cap
      self.count = n - 1
    end
    return v
  end
  local h = self.shead
  if h < self.stail then -- a sender is parked: take its value (inlined
    local co, v = self.sendq[h], self.sendv[h] -- pop_sender and wake)
    self.sendq[h], self.sendv[h] = nil, nil
    if h + 1 == self.stail then
      self.shead, self.stail = 1, 1
    else
      self.shead = h + 1
    end
    local t = ready_tail
    ready_co[t], ready_val[t] = co, nil
    ready_tail = t + 1
    return v
  end
  local t = self.rtail
  self.recvq[t] = running()
  self.rtail = t + 1
  return yield()
end

local a, b = channel(cap), channel(cap)
local sum = 0

spawn(function()
  for _ = 1, N do
    b:send(a:recv())
  end
end)
spawn(function()
  for i = 1, N do
    a:send(i)
    sum = sum + b:recv()
  end
end)
run()

if sum ~= N * (N + 1) // 2 then
  io.stderr:write(("w2 lua_coro: sum %d, expected %d\n"):format(sum, N * (N + 1) // 2))
  os.exit(1)
end
print(sum)
