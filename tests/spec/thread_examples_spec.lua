-- The thread examples run and print what their comments promise (small
-- sizes; no timing is asserted).
local helper = require "tests.spec.helper"
local q = helper.shell_quote

local example = helper.example

describe("thread examples #tsan", function()
  it("threads.lua: both threads start before either finishes", function()
    local code, out, err = example("threads.lua", "CRT_EXAMPLE_SECONDS=0.05")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("^Fetching data%.%.%.\nFetching data%.%.%.\nData fetched!\nData fetched!\n" ..
      "Both finished in %d+%.%d%d s %(threads %d+ and %d+%)\n$", out)
  end)

  it("mandelbrot.lua: the same image sequentially and in parallel, as a PGM file", function()
    local file = os.tmpname()
    local code, out, err = example("mandelbrot.lua 64 " .. q(file))
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("64 x 64 pixels, %d+ threads", out)
    assert.matches("speed%-up: +%d+%.%d%dx", out)
    local f = assert(io.open(file, "rb"))
    local data = f:read("a")
    f:close()
    os.remove(file)
    assert.are.equal("P5\n64 64\n255\n", data:sub(1, 13))
    assert.are.equal(13 + 64 * 64, #data)
  end)

  it("pipeline.lua: counts the primes through a bounded channel", function()
    local code, out, err = example("pipeline.lua 100000")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("9592 primes below 100001, 2 ranges", out)
    assert.matches("consumer 1 %(thread %d+%) handled %d+ ranges", out)
  end)
end)
