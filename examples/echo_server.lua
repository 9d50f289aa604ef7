-- echo_server.lua - a line echo server on crt.net.
--
--   crt examples/echo_server.lua PORT   serve on 127.0.0.1:PORT (0 = any free
--                                       port) until a client sends the line
--                                       "shutdown", or SIGINT / SIGTERM
--   crt examples/echo_server.lua        the same on a free port, plus a demo
--                                       client that talks to it, then stops it
--
-- Each connection gets its own task (crt.net.serve): it reads lines and
-- writes each back with "\n". The server prints "listening on HOST:PORT" once
-- it accepts connections, so that a parent process can wait for that line.
local port = tonumber(arg[1] or "0")
local demo = arg[1] == nil

local stop = crt.channel(1)
local connections = 0

local server = assert(crt.net.serve({host = "127.0.0.1", port = port}, function(stream)
  connections = connections + 1
  for line in stream:lines() do
    if line == "shutdown" then
      stream:write("bye\n")
      stop:try_send("a client asked")
      return
    end
    stream:write(line .. "\n")
  end
  -- The stream is closed when this function returns.
end))
print(("listening on %s:%d"):format(server.host, server.port))
io.stdout:flush()

-- Stop on a signal too. The handlers do not keep crt alive by themselves;
-- the main task below waits on `stop`.
local on_int = crt.signal.on("SIGINT", function() stop:try_send("SIGINT") end)
local on_term = crt.signal.on("SIGTERM", function() stop:try_send("SIGTERM") end)

local client
if demo then
  client = crt.spawn(function()
    local s = assert(crt.net.connect("127.0.0.1", server.port))
    for _, line in ipairs{"hello", "echo, echo", ""} do
      s:write(line .. "\n")
      print(("sent %q, got %q"):format(line, s:readline()))
    end
    s:write("shutdown\n")
    print("server says " .. s:readline())
    s:close()
  end)
end

local why = stop:recv()
if client then client:await() end
server:close()
on_int:stop()
on_term:stop()
print(("stopped (%s) after %d connection(s)"):format(why, connections))
