-- runner.lua - the crt command line's own Lua: the runner of its chunks (the
-- -e chunks, then the script or standard input, in one main task) and the
-- `crt -i` prompt. Compiled into the crt executable only (not the library, so
-- embedding hosts and `require "crt"` never load it). cli/main.c runs this
-- chunk once in the runtime's state after crt_open; it returns the main
-- function, which main.c starts as the main task with crt_start_main.
--
-- Loop thread only (the runtime's main state and its tasks).
local crt = require "crt"

local spawn, Cancelled = crt.spawn, crt.Cancelled
local pack, error, pcall = table.pack, error, pcall

-- readline(prompt) -> line | nil at end of input, on top of the reader of
-- standard input that cli/repl.c provides: stdin.read(deliver) returns a
-- line at once, false at end of input, or nothing when it has to wait; then
-- it calls deliver(line or false) from the loop once the line is there. The
-- task waits on a channel meanwhile, so every other task keeps running.
local function line_reader(stdin)
  local lines = crt.channel()
  local function deliver(line) lines:try_send(line) end
  return function(prompt)
    io.stdout:write(prompt)
    io.stdout:flush()
    local line = stdin.read(deliver)
    if line == nil then
      local ok, v = pcall(lines.recv, lines)
      if not ok then -- cancelled while waiting: stop reading
        stdin.stop()
        error(v, 0)
      end
      line = v
    end
    return line or nil
  end
end

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

-- main(chunks, stdin or nil, script args...): the -e chunks and the script,
-- in order; the script gets the arguments. With stdin (`-i`), the prompt
-- follows.
return function(chunks, stdin, ...)
  local n = #chunks
  for i = 1, n - 1 do chunk(chunks[i])() end
  if n > 0 then chunk(chunks[n])(...) end
  if stdin then
    repl(line_reader(stdin))
    -- End of input ends the session, like lua -i, even with tasks running.
    crt.exit()
  end
end
