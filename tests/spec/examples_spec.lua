-- The examples of the foundation run and print what their comments promise.
local helper = require "tests.spec.helper"
local q = helper.shell_quote

local example = helper.example

describe("examples", function()
  it("async.lua: both fetches start before either finishes", function()
    local code, out, err = example("async.lua", "CRT_EXAMPLE_SECONDS=0.05")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("^Fetching data%.%.%.\nFetching data%.%.%.\nData fetched!\nData fetched!\n" ..
      "Both finished in %d+%.%d%d s\n$", out)
  end)

  it("channels.lua: a pipeline with back-pressure and select", function()
    local code, out, err = example("channels.lua")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("20 results from 3 workers, sum of squares 2870", out)
    assert.matches("select got case 1: fast answer", out)
    assert.matches("then: timeout", out)
  end)

  it("structured.lua: groups, deadlines and races", function()
    local code, out, err = example("structured.lua")
    assert.are.equal("", err)
    assert.are.equal(0, code)
    assert.matches("c%.txt: cancelled, cleaning up", out)
    assert.matches("group failed: download of broken%.txt failed", out)
    assert.matches("nil\ttimeout", out)
    assert.matches("winner:\tmirror%-2", out)
  end)

  it("embed/host.c: a C host drives crt_step from its frame loop", function()
    local code, out = helper.run(q(helper.build_dir .. "/embed_host"))
    assert.are.equal(0, code)
    assert.matches("frames: %d+, events handled: 10", out)
    assert.matches("ticks ok", out)
  end)
end)
