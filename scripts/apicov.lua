-- apicov.lua - fails when a public crt function has no documentation or no
-- test: every function of the crt table and its sub-tables (crt.fs, crt.net,
-- ...) must be named in docs/*.md or docs/reference/*.md, and in
-- tests/spec/*.lua.
-- Run by scripts/lint as: build/crt scripts/apicov.lua [repo root]
local root = arg[1] or "."

local function slurp(pattern)
  local text = {}
  local p = io.popen("cat " .. root .. "/" .. pattern .. " 2>/dev/null")
  text[#text + 1] = p:read("a")
  p:close()
  return table.concat(text)
end

local docs = slurp("docs/*.md") .. slurp("docs/reference/*.md") .. slurp("README.md")
local specs = slurp("tests/spec/*.lua")

local missing = {}
local function check(name)
  -- The docs must give the full name ("crt.fs.read"); a spec may also call
  -- it through a local alias of its table ("fs.read(").
  if not docs:find(name, 1, true) then
    missing[#missing + 1] = name .. " (no documentation)"
  end
  local alias = name:match("^crt%.(%w+%.[%w_]+)$")
  if not specs:find(name, 1, true) and not (alias and specs:find(alias .. "(", 1, true)) then
    missing[#missing + 1] = name .. " (no test)"
  end
end

local n = 0
local function walk(t, prefix, depth)
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    if k:sub(1, 1) ~= "_" then
      if type(v) == "function" then
        n = n + 1
        check(prefix .. k)
      elseif type(v) == "table" and depth < 2 and v ~= t then
        walk(v, prefix .. k .. ".", depth + 1)
      end
    end
  end
end
walk(crt, "crt.", 0)

if #missing > 0 then
  io.stderr:write("apicov: public functions without documentation or test:\n")
  for _, m in ipairs(missing) do io.stderr:write("  ", m, "\n") end
  os.exit(1)
end
print(string.format("apicov: %d public functions, each documented and tested", n))
