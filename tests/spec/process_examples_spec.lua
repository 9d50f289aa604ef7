-- The process examples run and print what their comments promise (small
-- sizes; no timing is asserted).
local helper = require "tests.spec.helper"

local example = helper.example

describe("process examples", function()
  it("processes.lua: both children start before either finishes", function()
    local code, out, err = example("processes.lua", "CRT_EXAMPLE_SECONDS=0.2")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("^Fetching data%.%.%.\nFetching data%.%.%.\nData fetched!\nData fetched!\n" ..
      "Both finished in %d+%.%d%d s %(processes %d+ and %d+%)\n$", out)
  end)

  it("combining.lua: the same answers inline, on processes and on threads", function()
    local code, out, err = example("combining.lua 200 1000")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("200 requests", out)
    local sums = {}
    for way, sum in out:gmatch("\n(%a+) +[%d.]+ +[%d.]+ +(%d+)") do sums[way] = sum end
    assert.is_not_nil(sums.inline)
    assert.are.equal(sums.inline, sums.processes)
    if sums.threads then assert.are.equal(sums.inline, sums.threads) end
  end)
end)
