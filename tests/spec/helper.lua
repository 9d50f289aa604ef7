-- helper.lua - shared checks for the specs: after each spec, nothing the spec
-- started may still be alive (no pending task, timer or keep-alive handle
-- beyond the main task that runs busted itself).
local crt = require "crt"

local helper = {}

-- Let cancelled tasks finish their cleanup, then check the runtime is back
-- to its resting state: only the main task alive, no timer armed.
function helper.assert_clean()
  for _ = 1, 10 do
    local s = crt.stats()
    if s.tasks == 1 and s.timers == 0 and s.keepalive == 0 then return end
    crt.yield()
  end
  local s = crt.stats()
  error(string.format("leak after spec: %d tasks (1 expected), %d timers, %d keepalive",
    s.tasks, s.timers, s.keepalive), 2)
end

-- The crt executable and source tree, for specs that run crt as a program.
helper.build_dir = os.getenv("CRT_BUILD_DIR") or "build"
helper.source_dir = os.getenv("CRT_SOURCE_DIR") or "."
helper.crt = helper.build_dir .. "/crt"
-- A stock lua5.4; under a sanitizer the sanitizer runtime must be preloaded
-- for it to load crt.so.
local preload = os.getenv("CRT_PRELOAD") or ""
helper.lua = (preload ~= "" and ("LD_PRELOAD=" .. preload .. " ") or "") .. "lua5.4"

-- Run a shell command, return its exit status, stdout and stderr.
function helper.run(cmd)
  local errfile = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. errfile, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errfile, "r")
  local err = f:read("a")
  f:close()
  os.remove(errfile)
  return code, out, err
end

-- Run an example as its own crt process: args is the file name under
-- examples/ followed by its arguments (quoted by the caller), env an optional
-- "NAME=value" prefix. Returns the exit status, stdout and stderr.
function helper.example(args, env)
  return helper.run((env or "") .. " " .. helper.shell_quote(helper.crt) .. " " ..
    helper.shell_quote(helper.source_dir .. "/examples/") .. args .. " </dev/null")
end

function helper.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

return helper
