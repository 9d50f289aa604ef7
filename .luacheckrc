-- luacheck configuration for crt's Lua code (bindings, cli, examples,
-- benchmarks, specs). Run by scripts/lint and scripts/test.
std = "lua54"
-- The crt binary installs the crt table as a global; scripts may use it
-- without require "crt".
globals = { "crt" }
-- Build trees hold generated or copied files that are not ours to lint.
exclude_files = { "build/**", "build-*/**", "out/**" }

-- Specs run under busted, which provides describe, it, assert, spy, ...
files["tests/spec"] = { std = "+busted" }
