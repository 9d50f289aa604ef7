-- mandelbrot.lua - CPU-bound work on every core: the Mandelbrot set computed
-- row by row, first sequentially in the main task, then in parallel with
-- crt.thread.map (one Lua state per core, rows sent back as strings), and
-- written as a PGM image. Prints both times and the speed-up.
--
-- Lua has no global lock: each worker thread runs its own Lua state, so the
-- rows really are computed at the same time. The row function is sent once
-- (its bytecode is cached per pool); each job carries a chunk of row numbers
-- and brings back the chunk's rows.
--
-- Run: scripts/crt examples/mandelbrot.lua [size] [out.pgm]
--      (default 800 x 800 pixels into mandelbrot.pgm; CRT_EXAMPLE_SIZE too)
local size = math.tointeger(tonumber(arg and arg[1] or os.getenv("CRT_EXAMPLE_SIZE") or "800"))
local out = arg and arg[2] or "mandelbrot.pgm"
local MAXITER = 255

-- One row of the image as a string of grey levels (0 = inside the set).
local function row(y, n, maxiter)
  local bytes = {}
  local ci = 2.4 * y / n - 1.2
  for x = 0, n - 1 do
    local cr = 3.2 * x / n - 2.2
    local zr, zi, i = 0.0, 0.0, 0
    while i < maxiter and zr * zr + zi * zi < 4.0 do
      zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
      i = i + 1
    end
    bytes[x + 1] = i == maxiter and 0 or 255 - i
  end
  return string.char(table.unpack(bytes))
end

local ys = {}
for y = 0, size - 1 do ys[#ys + 1] = y end

local t0 = crt.now()
local seq = {}
for i, y in ipairs(ys) do seq[i] = row(y, size, MAXITER) end
local t_seq = crt.now() - t0

t0 = crt.now()
local par = crt.thread.map(function(y) return row(y, size, MAXITER) end, ys)
local t_par = crt.now() - t0

for i = 1, size do assert(seq[i] == par[i], "row " .. i .. " differs") end

local f = assert(io.open(out, "wb"))
f:write(string.format("P5\n%d %d\n255\n", size, size), table.concat(par))
f:close()

print(string.format("%d x %d pixels, %d threads", size, size, crt.thread.size()))
print(string.format("sequential: %.3f s", t_seq))
print(string.format("parallel:   %.3f s", t_par))
print(string.format("speed-up:   %.2fx", t_seq / t_par))
print("wrote " .. out)
