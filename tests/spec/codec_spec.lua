-- crt.codec: encode, decode and register. Round trips of every type, identity
-- of shared tables and cycles, functions and their upvalues, registered
-- metatables, channels, the error messages (with the path of the bad value),
-- and hostile input. Runs inside the crt binary (crt /usr/bin/busted ...).
local crt = require "crt"
local helper = require "tests.spec.helper"

local codec = crt.codec
local FN = { functions = true }

local function rt(v, opts) return codec.decode(codec.encode(v), opts) end

local function encode_error(v)
  local ok, err = pcall(codec.encode, v)
  assert.is_false(ok)
  return err
end

local function decode_error(s, opts)
  local ok, err = pcall(codec.decode, s, opts)
  assert.is_false(ok, "decode should have failed")
  assert.is_string(err)
  return err
end

describe("crt.codec", function()
  after_each(helper.assert_clean)

  describe("round trips", function()
    it("nil, booleans and strings", function()
      assert.is_nil(rt(nil))
      assert.is_true(rt(true))
      assert.is_false(rt(false))
      assert.are.equal("", rt(""))
      assert.are.equal("hello", rt("hello"))
      local bin = {}
      for i = 0, 255 do bin[#bin + 1] = string.char(i) end
      bin = table.concat(bin) .. "\0\0end"
      assert.are.equal(bin, rt(bin))
      local long = string.rep("abc\0", 100000)
      assert.are.equal(long, rt(long))
    end)

    it("integers and floats exactly, keeping the subtype", function()
      for _, v in ipairs { 0, 1, -1, 127, 128, -129, 2 ^ 31, math.maxinteger, math.mininteger } do
        local got = rt(v)
        assert.are.equal(v, got)
        assert.are.equal(math.type(v), math.type(got))
      end
      for _, v in ipairs { 0.0, 1.0, 0.5, -2.25, math.pi, 1e308, 5e-324, 2 ^ 63, 3.0 } do
        local got = rt(v)
        assert.are.equal(v, got)
        assert.are.equal("float", math.type(got))
      end
      assert.are.equal("integer", math.type(rt(3)))
      assert.are.equal("float", math.type(rt(3.0)))
    end)

    it("NaN, infinities and -0.0", function()
      local nan = rt(0 / 0)
      assert.is_true(nan ~= nan)
      assert.are.equal(math.huge, rt(math.huge))
      assert.are.equal(-math.huge, rt(-math.huge))
      local nz = rt(-0.0)
      assert.are.equal(0, nz)
      assert.are.equal(-math.huge, 1 / nz)
      assert.are.equal(math.huge, 1 / rt(0.0))
    end)

    it("nested tables, holes and keys of every type", function()
      local k = {}
      local t = {
        1, 2, nil, 4,
        x = "y",
        [1.5] = "float key",
        [true] = "true key",
        [false] = { deep = { deeper = { 1, 2, 3 } } },
        [-7] = "negative",
        [k] = "table key",
        [2 ^ 63] = "big",
        ["odd key"] = 1,
      }
      for i = 1, 300 do t["k" .. i] = i end
      local got = rt(t)
      assert.are.equal(1, got[1])
      assert.are.equal(2, got[2])
      assert.is_nil(got[3])
      assert.are.equal(4, got[4])
      assert.are.equal("y", got.x)
      assert.are.equal("float key", got[1.5])
      assert.are.equal("true key", got[true])
      assert.are.same({ 1, 2, 3 }, got[false].deep.deeper)
      assert.are.equal("negative", got[-7])
      assert.are.equal("big", got[2 ^ 63])
      assert.are.equal(1, got["odd key"])
      for i = 1, 300 do assert.are.equal(i, got["k" .. i]) end
      local tablekeys = 0
      for key, v in pairs(got) do
        if type(key) == "table" then
          tablekeys = tablekeys + 1
          assert.are.equal("table key", v)
          assert.are_not.equal(k, key) -- a copy
        end
      end
      assert.are.equal(1, tablekeys)
      local list = {}
      for i = 1, 10000 do list[i] = i * 2 end
      assert.are.same(list, rt(list))
    end)

    it("keeps shared references and cycles within one message", function()
      local s = { v = 1 }
      local c = { s, s, s = s, [s] = s }
      c.self = c
      c.list = { c, { c } }
      local got = rt(c)
      assert.are.equal(got, got.self)
      assert.are.equal(got, got.list[1])
      assert.are.equal(got, got.list[2][1])
      assert.are.equal(got[1], got[2])
      assert.are.equal(got[1], got.s)
      assert.are.equal(got[1], got[got[1]])
      assert.are.equal(1, got.s.v)
      assert.are_not.equal(s, got.s)
      -- Each message is its own copy.
      local s1, s2 = rt(s), rt(s)
      assert.are_not.equal(s1, s2)
    end)

    it("encodes a table used many times as one table", function()
      local shared = {}
      local many = {}
      for i = 1, 1000 do many[i] = { shared, i } end
      local s = codec.encode(many)
      local got = codec.decode(s)
      for i = 1, 1000 do
        assert.are.equal(got[1][1], got[i][1])
        assert.are.equal(i, got[i][2])
      end
    end)
  end)

  describe("functions", function()
    it("copies Lua functions with their upvalues", function()
      local n, t = 10, { k = "vv" }
      local function add(x) return x + n + #t.k end
      local f = rt(add, FN)
      assert.are.equal(13, f(1))
      assert.are_not.equal(add, f)
      local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end
      assert.are.equal(120, rt(fact, FN)(5))
    end)

    it("binds _ENV to the receiving state's globals", function()
      -- (A local such as `crt` above would be an upvalue, copied; globals are not.)
      local g = rt(function() return string.format("%d", 42), type(_G), _G == _ENV end, FN)
      assert.are.same({ "42", "table", true }, { g() })
      _G.__codec_marker = "here"
      local h = rt(function() return __codec_marker end, FN) -- luacheck: globals __codec_marker
      assert.are.equal("here", h())
      _G.__codec_marker = nil
    end)

    it("keeps upvalues shared between closures shared", function()
      local count = 0
      local api = {
        inc = function() count = count + 1 return count end,
        get = function() return count end,
      }
      local got = rt(api, FN)
      got.inc()
      got.inc()
      assert.are.equal(2, got.get())
      assert.are.equal(0, count)
    end)

    it("keeps debug information for tracebacks", function()
      local f = rt(function() error("boom") end, FN)
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.matches("codec_spec.lua:%d+: boom", err)
    end)

    it("sends standard library C functions by name", function()
      local got = rt({ print, string.format, math.floor, table.concat, io.write, os.time,
        coroutine.wrap, utf8.char, pairs }, FN)
      assert.are.equal(print, got[1])
      assert.are.equal(string.format, got[2])
      assert.are.equal(math.floor, got[3])
      assert.are.equal(table.concat, got[4])
      assert.are.equal(io.write, got[5])
      assert.are.equal(os.time, got[6])
      assert.are.equal(coroutine.wrap, got[7])
      assert.are.equal(utf8.char, got[8])
      assert.are.equal(pairs, got[9])
    end)

    it("are refused by decode unless opts.functions is true", function()
      local s = codec.encode({ f = function() return 1 end })
      local err = decode_error(s)
      assert.matches("^crt.codec.decode: input contains a function", err)
      assert.matches("functions are not allowed", err)
      assert.are.equal(1, codec.decode(s, FN).f())
      decode_error(codec.encode(print))
      decode_error(s, { functions = false })
    end)
  end)

  describe("metatables", function()
    it("are restored when registered under the same name", function()
      local Point = { __index = {} }
      function Point.__index.len(p) return p.x + p.y end
      assert.are.equal(Point, codec.register("codec_spec.Point", Point))
      local p = setmetatable({ x = 1, y = 2 }, Point)
      local got = rt({ p, p })
      assert.are.equal(Point, getmetatable(got[1]))
      assert.are.equal(3, got[1]:len())
      assert.are.equal(got[1], got[2])
    end)

    it("must be registered to encode, and in the receiving state to decode", function()
      assert.are.equal("crt.codec.encode: cannot encode value .a (table with unregistered metatable)",
        encode_error({ a = setmetatable({}, {}) }))
      local M = {}
      codec.register("codec_spec.Gone", M)
      local s = codec.encode(setmetatable({}, M))
      codec.register("codec_spec.Gone2", M) -- the name moves
      assert.matches("metatable 'codec_spec.Gone' is not registered", decode_error(s))
    end)

    it("checks register's arguments", function()
      local ok, err = pcall(codec.register, nil, {})
      assert.is_false(ok)
      assert.are.equal("crt.codec.register: bad argument #1 (string expected, got nil)", err)
      ok, err = pcall(codec.register, "x", 1)
      assert.is_false(ok)
      assert.are.equal("crt.codec.register: bad argument #2 (table expected, got number)", err)
    end)
  end)

  describe("channels", function()
    it("cross by reference", function()
      local ch = crt.channel()
      local got = rt({ ch = ch, again = ch })
      assert.are.equal(ch, got.ch)
      assert.are.equal(ch, got.again)
      got.ch:send("through the copy")
      assert.are.equal("through the copy", ch:recv())
      ch:close()
    end)
  end)

  describe("errors", function()
    it("name the path of a value that cannot be copied", function()
      assert.are.equal("crt.codec.encode: cannot encode value .a.b[3] (userdata)",
        encode_error({ a = { b = { 1, 2, io.stdout } } }))
      assert.are.equal("crt.codec.encode: cannot encode value (userdata)", encode_error(io.stdout))
      assert.are.equal("crt.codec.encode: cannot encode value .co (thread)",
        encode_error({ co = coroutine.create(print) }))
      assert.are.equal("crt.codec.encode: cannot encode value [\"odd key\"][2] (thread)",
        encode_error({ ["odd key"] = { 1, coroutine.running() } }))
      -- A C function of the io library's file methods is not a standard
      -- library function reachable by name.
      assert.are.equal("crt.codec.encode: cannot encode value .m.write (C function)",
        encode_error({ m = { write = io.stdout.write } }))
      assert.are.equal("crt.codec.encode: cannot encode value {key} (userdata)",
        encode_error({ [io.stdout] = true }))
    end)

    it("name upvalues in the path", function()
      local conn = io.stdout
      local function uses() return conn end
      assert.are.equal("crt.codec.encode: cannot encode value upvalue 'conn' (userdata)",
        encode_error(uses))
      local t = { x = { coroutine.create(print) } }
      local function deep() return t end
      assert.are.equal("crt.codec.encode: cannot encode value .h[1] upvalue 't'.x[1] (thread)",
        encode_error({ h = { deep } }))
    end)

    it("limit nesting depth on both sides", function()
      local function nest(n)
        local top = {}
        local t = top
        for _ = 2, n do t[1] = {} t = t[1] end
        return top
      end
      local s = codec.encode(nest(200))
      assert.is_table(codec.decode(s))
      local err = encode_error(nest(201))
      assert.matches("^crt.codec.encode: cannot encode value %[1%]%[1%].*%(too deep", err)
      -- A hand-made message nested 300 deep.
      local bytes = { "\1\0\1" }
      for i = 2, 301 do bytes[i] = "\6\1\0" end
      bytes[#bytes + 1] = "\0"
      assert.matches("too deep", decode_error(table.concat(bytes)))
    end)

    it("check decode's arguments", function()
      local ok, err = pcall(codec.decode, nil)
      assert.is_false(ok)
      assert.are.equal("crt.codec.decode: bad argument #1 (string expected, got nil)", err)
      ok, err = pcall(codec.decode, codec.encode(1), "functions")
      assert.is_false(ok)
      assert.are.equal("crt.codec.decode: bad argument #2 (table expected, got string)", err)
      ok, err = pcall(codec.encode)
      assert.is_false(ok)
      assert.are.equal("crt.codec.encode: bad argument #1 (value expected)", err)
    end)
  end)

  describe("hostile input", function()
    it("rejects empty, unknown and trailing input", function()
      assert.are.equal("crt.codec.decode: malformed input (truncated at byte 0)", decode_error(""))
      assert.matches("unknown format version", decode_error("\2\0\1\0"))
      assert.matches("trailing bytes", decode_error(codec.encode(1) .. "x"))
      assert.matches("bad tag", decode_error("\1\0\1\127"))
    end)

    it("rejects every truncation of a valid message", function()
      local c = { 1, 2.5, "str", { x = { y = {} } }, true, [{}] = "k", f = function() return 1 end }
      c.self = c
      local s = codec.encode(c)
      for n = 0, #s - 1 do
        local ok, err = pcall(codec.decode, s:sub(1, n), FN)
        assert.is_false(ok)
        assert.matches("^crt.codec.decode: ", err)
      end
      local v = codec.decode(s, FN)
      assert.are.equal(v, v.self)
    end)

    it("never crashes on random or mutated bytes", function()
      local s = codec.encode({ 1, "two", { 3, { 4 } }, x = { y = true }, [2.5] = -1 })
      local seed = 12345
      local function rand(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
      end
      for _ = 1, 3000 do
        local b = { s:byte(1, -1) }
        for _ = 1, 1 + rand(3) do b[1 + rand(#b)] = rand(256) end
        pcall(codec.decode, string.char(table.unpack(b)))
        local r = {}
        for i = 1, rand(40) do r[i] = rand(i < 3 and 2 or 16) end
        pcall(codec.decode, string.char(table.unpack(r)))
      end
    end)

    it("does not allocate what a message only claims", function()
      collectgarbage()
      local before = collectgarbage("count")
      -- A table claiming 2^31-1 array items, a string of 2^62 bytes.
      decode_error("\1\0\1\6\255\255\255\255\7\0\0")
      decode_error("\1\0\1\5\128\128\128\128\128\128\128\128\64x")
      assert.is_true(collectgarbage("count") - before < 1024)
    end)
  end)

  describe("the crt table", function()
    it("travels by reference: it stands for the receiver's own crt", function()
      local v = crt.codec.decode(crt.codec.encode({ lib = crt, n = 1 }))
      assert.are.equal(crt, v.lib)
      assert.are.equal(1, v.n)
    end)

    it("lets a function with crt as an upvalue be sent", function()
      local function f() return crt.now() > 0 end
      local g = crt.codec.decode(crt.codec.encode(f), { functions = true })
      assert.is_true(g())
    end)
  end)
end)
