-- W5 for luv under lua5.4: a luv thread (uv.new_thread) sends 1,000,000
-- small tables {i = i, s = "hello"} to the main loop through a pipe, as a
-- luv user would: each table is written as a line "i,s\n" (batched per
-- 64 KiB write), and the main loop splits the stream and rebuilds the tables.
-- Usage: lua5.4 lua_luv.lua [N]
local uv = require "luv"
local N = math.tointeger(tonumber(arg[1] or "1000000"))
local fds = assert(uv.pipe({ nonblock = true }, { nonblock = false }))

local t0 = uv.hrtime()
local thread = uv.new_thread(function(fd, n)
  local uv2 = require "luv"
  local buf, nb = {}, 0
  local function flush()
    local s = table.concat(buf, "", 1, nb)
    local off = 1
    while off <= #s do
      local w = assert(uv2.fs_write(fd, s:sub(off)))
      off = off + w
    end
    nb = 0
  end
  for i = 1, n do
    local t = { i = i, s = "hello" }
    nb = nb + 1
    buf[nb] = t.i .. "," .. t.s .. "\n"
    if nb == 4096 then flush() end
  end
  if nb > 0 then flush() end
  uv2.fs_close(fd)
end, fds.write, N)

local pipe = uv.new_pipe(false)
pipe:open(fds.read)
local sum, count, rest = 0, 0, ""
pipe:read_start(function(err, data)
  assert(not err, err)
  if not data then
    pipe:close()
    return
  end
  data = rest .. data
  local last = 1
  for i, s, e in data:gmatch("(%d+),(%a+)\n()") do
    local t = { i = tonumber(i), s = s }
    sum = sum + t.i
    count = count + 1
    last = e
  end
  rest = data:sub(last)
end)
uv.run()
thread:join()
local t = (uv.hrtime() - t0) / 1e9
if count ~= N or sum ~= N * (N + 1) // 2 then
  io.stderr:write(("w5 luv: %d messages, sum %d\n"):format(count, sum))
  os.exit(1)
end
print(string.format("RESULT time_s=%.3f us_per_msg=%.3f msgs_per_s=%.0f", t, t / N * 1e6, N / t))
