-- crt.fs: files and directories on libuv's fs requests. Every call waits in
-- the calling task only; outside-world failures return nil, message, code.
local helper = require "tests.spec.helper"
local fs = crt.fs

local is_root = (crt.process.exec({"id", "-u"}) or {}).stdout == "0\n"

-- A fresh directory per spec, removed (recursively) afterwards.
local function rm_tree(path)
  local st = fs.lstat(path)
  if not st then return end
  if st.type == "directory" then
    for _, name in ipairs(assert(fs.readdir(path))) do rm_tree(path .. "/" .. name) end
    assert(fs.rmdir(path))
  else
    assert(fs.unlink(path))
  end
end

local function open_fds() return #assert(fs.readdir("/proc/self/fd")) end

-- Wait (boundedly) until the number of open descriptors is back to n: a
-- cancelled request closes what it opened when its callback runs.
local function wait_fds(n)
  for _ = 1, 200 do
    if open_fds() == n then return true end
    crt.sleep(0.005)
  end
  return open_fds() == n
end

local function check_fail(code, ok, msg, got)
  assert.is_nil(ok)
  assert.is_string(msg)
  assert.are.equal(code, got, msg)
end

describe("crt.fs", function()
  local dir
  local seq = 0

  before_each(function()
    seq = seq + 1
    dir = ("/tmp/crt-fs-spec-%d-%d-%d"):format(os.time(), math.random(1e9), seq)
    assert(fs.mkdir(dir))
  end)

  after_each(function()
    rm_tree(dir)
    helper.assert_clean()
  end)

  describe("read, write, append", function()
    it("round-trips text and binary data, and empty files", function()
      local p = dir .. "/a"
      assert.is_true(fs.write(p, "hello\n"))
      assert.are.equal("hello\n", fs.read(p))
      local bin = "\0\1\2\255" .. string.rep("\0", 1000) .. "end"
      assert.is_true(fs.write(p, bin))
      assert.are.equal(bin, fs.read(p))
      assert.is_true(fs.write(p, ""))
      assert.are.equal("", fs.read(p))
    end)

    it("write truncates and append appends, creating the file", function()
      local p = dir .. "/log"
      assert.is_true(fs.append(p, "one\n"))
      assert.is_true(fs.append(p, "two\n"))
      assert.are.equal("one\ntwo\n", fs.read(p))
      assert.is_true(fs.write(p, "three\n"))
      assert.are.equal("three\n", fs.read(p))
    end)

    it("reads files without a size (/proc) to the end", function()
      local s = assert(fs.read("/proc/self/status"))
      assert.matches("Name:", s)
    end)

    it("reads and writes a large file in chunks", function()
      local p = dir .. "/big"
      local big = string.rep("0123456789abcdef", 4 * 1024 * 1024) -- 64 MiB
      assert.is_true(fs.write(p, big))
      local back = fs.read(p)
      assert.are.equal(#big, #back)
      assert.is_true(back == big)
      assert.are.equal(#big, fs.stat(p).size)
    end)

    it("waits in the calling task only: timers and tasks run meanwhile", function()
      -- Reading a fifo cannot finish before someone writes to it: while the
      -- reader waits, the main task sleeps and other tasks run.
      local p = dir .. "/fifo"
      assert.are.equal(0, crt.process.exec({"mkfifo", p}).code)
      local reader = crt.spawn(function() return fs.read(p) end)
      local ran = 0
      local other = crt.spawn(function()
        for _ = 1, 3 do
          crt.sleep(0.001)
          ran = ran + 1
        end
      end)
      other:await()
      crt.sleep(0.01)
      assert.are.equal(3, ran)
      assert.is_false(reader:done())
      assert.is_true(fs.write(p, "through the fifo"))
      assert.are.equal("through the fifo", reader:await())
    end)

    it("reports failures as nil, message, code", function()
      check_fail("ENOENT", fs.read(dir .. "/missing"))
      local ok, msg = fs.read(dir .. "/missing")
      assert.is_nil(ok)
      assert.matches("missing: no such file or directory", msg, 1, true)
      check_fail("EISDIR", fs.read(dir))
      assert(fs.write(dir .. "/f", "x"))
      check_fail("ENOTDIR", fs.read(dir .. "/f/below"))
      check_fail("ENOTDIR", fs.write(dir .. "/f/below", "x"))
      check_fail("ENOENT", fs.write(dir .. "/no/such/dir", "x"))
      check_fail("EISDIR", fs.write(dir, "x"))
      check_fail("ENOENT", fs.append(dir .. "/no/file", "x"))
    end)

    it("reports EACCES for a file without permissions (not as root)", function()
      local p = dir .. "/secret"
      assert(fs.write(p, "x"))
      assert(crt.process.exec({"chmod", "000", p}))
      if is_root then
        -- root reads anyway; the failure path is covered by exec's EACCES
        assert.are.equal("x", fs.read(p))
      else
        check_fail("EACCES", fs.read(p))
        check_fail("EACCES", fs.write(p, "y"))
      end
    end)

    it("rejects bad arguments", function()
      assert.has_error(function() fs.read(nil) end,
        "crt.fs.read: bad argument #1 (string expected, got nil)")
      assert.has_error(function() fs.read(42) end,
        "crt.fs.read: bad argument #1 (string expected, got number)")
      assert.has_error(function() fs.read("a\0b") end,
        "crt.fs.read: bad argument #1 (string contains a NUL byte)")
      assert.has_error(function() fs.read("") end, "crt.fs.read: bad argument #1 (empty string)")
      assert.has_error(function() fs.write(dir .. "/x", 42) end,
        "crt.fs.write: bad argument #2 (string expected, got number)")
      assert.has_error(function() fs.write(dir .. "/x") end,
        "crt.fs.write: bad argument #2 (string expected, got no value)")
      assert.has_error(function() fs.append(dir .. "/x", {}) end,
        "crt.fs.append: bad argument #2 (string expected, got table)")
    end)

    it("must be called from a task", function()
      local co = coroutine.wrap(function() return pcall(fs.read, "/etc/hostname") end)
      local ok, err = co()
      assert.is_false(ok)
      assert.matches("crt.fs.read: must be called from a task", err, 1, true)
    end)
  end)

  describe("stat and lstat", function()
    it("describes files, directories, links, fifos and devices", function()
      local p = dir .. "/f"
      assert(fs.write(p, "12345"))
      local st = assert(fs.stat(p))
      assert.are.equal("file", st.type)
      assert.are.equal(5, st.size)
      assert.is_number(st.mtime)
      assert.is_true(math.abs(st.mtime - os.time()) < 600)
      assert.are.equal(0, st.mode & ~0x1ff & ~0xe00)
      assert(crt.process.exec({"chmod", "640", p}))
      assert.are.equal(416, fs.stat(p).mode) -- 0640
      assert.are.equal("directory", fs.stat(dir).type)
      assert.are.equal("char", fs.stat("/dev/null").type)

      assert.are.equal(0, crt.process.exec({"ln", "-s", p, dir .. "/link"}).code)
      assert.are.equal("link", fs.lstat(dir .. "/link").type)
      assert.are.equal("file", fs.stat(dir .. "/link").type) -- stat follows links
      assert.are.equal(0, crt.process.exec({"mkfifo", dir .. "/fifo"}).code)
      assert.are.equal("fifo", fs.stat(dir .. "/fifo").type)
    end)

    it("fails with ENOENT and ENOTDIR", function()
      check_fail("ENOENT", fs.stat(dir .. "/missing"))
      check_fail("ENOENT", fs.lstat(dir .. "/missing"))
      assert(fs.write(dir .. "/f", ""))
      check_fail("ENOTDIR", fs.stat(dir .. "/f/x"))
      assert.has_error(function() fs.stat(false) end,
        "crt.fs.stat: bad argument #1 (string expected, got boolean)")
    end)
  end)

  describe("directories", function()
    it("mkdir, readdir (without . and ..), rename, unlink, rmdir", function()
      assert.are.same({}, fs.readdir(dir))
      assert.is_true(fs.mkdir(dir .. "/sub"))
      assert.is_true(fs.write(dir .. "/b", "b"))
      assert.is_true(fs.write(dir .. "/a", "a"))
      local names = fs.readdir(dir)
      table.sort(names)
      assert.are.same({"a", "b", "sub"}, names)
      assert.is_true(fs.rename(dir .. "/a", dir .. "/sub/c"))
      assert.are.same({"c"}, fs.readdir(dir .. "/sub"))
      assert.are.equal("a", fs.read(dir .. "/sub/c"))
      assert.is_true(fs.unlink(dir .. "/sub/c"))
      assert.is_true(fs.rmdir(dir .. "/sub"))
      assert.is_true(fs.mkdir(dir .. "/m", 448)) -- 0700
      assert.are.equal(448, fs.stat(dir .. "/m").mode)
    end)

    it("reports failures", function()
      check_fail("EEXIST", fs.mkdir(dir))
      check_fail("ENOENT", fs.mkdir(dir .. "/a/b"))
      check_fail("ENOENT", fs.readdir(dir .. "/missing"))
      assert(fs.write(dir .. "/f", "x"))
      check_fail("ENOTDIR", fs.readdir(dir .. "/f"))
      check_fail("ENOTDIR", fs.rmdir(dir .. "/f"))
      assert(fs.mkdir(dir .. "/full"))
      assert(fs.write(dir .. "/full/x", "x"))
      check_fail("ENOTEMPTY", fs.rmdir(dir .. "/full"))
      check_fail("ENOENT", fs.rmdir(dir .. "/missing"))
      check_fail("ENOENT", fs.unlink(dir .. "/missing"))
      check_fail("EISDIR", fs.unlink(dir .. "/full"))
      check_fail("ENOENT", fs.rename(dir .. "/missing", dir .. "/x"))
    end)

    it("rejects bad arguments", function()
      assert.has_error(function() fs.mkdir(dir .. "/x", "rwx") end,
        "crt.fs.mkdir: bad argument #2 (integer expected, got string)")
      assert.has_error(function() fs.mkdir(dir .. "/x", -1) end,
        "crt.fs.mkdir: bad argument #2 (mode out of range (0 to 07777))")
      assert.has_error(function() fs.rename(dir) end,
        "crt.fs.rename: bad argument #2 (string expected, got no value)")
      assert.has_error(function() fs.rename("a", "b\0") end,
        "crt.fs.rename: bad argument #2 (string contains a NUL byte)")
      assert.has_error(function() fs.readdir() end,
        "crt.fs.readdir: bad argument #1 (string expected, got no value)")
      assert.has_error(function() fs.unlink({}) end,
        "crt.fs.unlink: bad argument #1 (string expected, got table)")
      assert.has_error(function() fs.rmdir(1) end,
        "crt.fs.rmdir: bad argument #1 (string expected, got number)")
    end)
  end)

  describe("open", function()
    it("reads by count, to the end, and nil at the end of the file", function()
      local p = dir .. "/f"
      assert(fs.write(p, "abcdefghij"))
      local f = assert(fs.open(p, "r"))
      assert.are.equal("abc", f:read(3))
      assert.are.equal("", f:read(0))
      assert.are.equal("defghij", f:read(100)) -- fewer at the end
      assert.is_nil(f:read(1))
      assert.are.equal("", f:read("a")) -- like io: "" at the end
      assert.are.equal(0, f:seek(0))
      assert.are.equal("abcdefghij", f:read())
      assert.are.equal(10, f:seek())
      assert.are.equal(7, f:seek(-3, "end"))
      assert.are.equal(8, f:seek(1, "cur"))
      assert.are.equal("ij", f:read("a"))
      assert.is_true(f:close())
      assert.is_true(f:close()) -- closing twice is harmless
      assert.has_error(function() f:read(1) end, "file:read: attempt to use a closed file")
      assert.has_error(function() f:write("x") end, "file:write: attempt to use a closed file")
      assert.has_error(function() f:seek(0) end, "file:seek: attempt to use a closed file")
    end)

    it("supports io.open's modes", function()
      local p = dir .. "/m"
      local f = assert(fs.open(p, "w"))
      assert.is_true(f:write("hello"))
      check_fail("EBADF", f:read(1))
      f:close()
      f = assert(fs.open(p, "a"))
      assert.is_true(f:write(" world"))
      f:close()
      assert.are.equal("hello world", fs.read(p))
      f = assert(fs.open(p, "r+"))
      assert.is_true(f:write("J"))
      assert.are.equal("ello", f:read(4))
      check_fail("EBADF", fs.open(p, "rb"):write("x"))
      f:close()
      assert.are.equal("Jello world", fs.read(p))
      f = assert(fs.open(p, "a+"))
      assert.are.equal("Jello", f:read(5)) -- reads start at the beginning
      assert.is_true(f:write("!")) -- writes go to the end
      f:close()
      assert.are.equal("Jello world!", fs.read(p))
      f = assert(fs.open(p, "w+b"))
      assert.are.equal("", f:read("a"))
      assert.is_true(f:write("new"))
      assert.are.equal(0, f:seek(0))
      assert.are.equal("new", f:read(10))
      f:close()
      assert.is_truthy(fs.open(p)) -- "r" by default
    end)

    it("closes files on garbage collection and at the end of a scope", function()
      local p = dir .. "/gc"
      assert(fs.write(p, "x"))
      collectgarbage()
      local base = open_fds()
      do
        local f = assert(fs.open(p, "r"))
        assert.are.equal(base + 1, open_fds())
        assert.are.equal("x", f:read(1))
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(base, open_fds())
      do
        local f <close> = assert(fs.open(p, "r")) -- luacheck: ignore
        assert.are.equal(base + 1, open_fds())
      end
      assert.are.equal(base, open_fds())
    end)

    it("allows one operation at a time per file", function()
      local p = dir .. "/busy"
      assert(fs.write(p, string.rep("x", 1 << 20)))
      local f = assert(fs.open(p, "r"))
      local reader = crt.spawn(function() return f:read("a") end)
      crt.yield() -- the reader is now waiting on its request
      assert.has_error(function() f:read(1) end, "file:read: another task is using this file")
      assert.has_error(function() f:close() end, "file:close: another task is using this file")
      assert.are.equal(1 << 20, #reader:await())
      assert.is_true(f:close())
    end)

    it("reports failures and rejects bad arguments", function()
      check_fail("ENOENT", fs.open(dir .. "/missing", "r"))
      check_fail("EISDIR", fs.open(dir, "w"))
      assert.has_error(function() fs.open(dir .. "/x", "rw") end,
        "crt.fs.open: bad argument #2 (invalid mode (r, w, a, r+, w+ or a+, with an optional b))")
      assert.has_error(function() fs.open(dir .. "/x", "x") end)
      assert.has_error(function() fs.open(dir .. "/x", "r++") end)
      assert.has_error(function() fs.open(dir .. "/x", 1) end,
        "crt.fs.open: bad argument #2 (string expected, got number)")
      assert(fs.write(dir .. "/f", "abc"))
      local f = assert(fs.open(dir .. "/f", "r"))
      assert.has_error(function() f:read(-1) end,
        "file:read: bad argument #1 (count must be a non-negative integer)")
      assert.has_error(function() f:read("l") end,
        "file:read: bad argument #1 (invalid format (a count or \"a\"))")
      assert.has_error(function() f:seek(0, "middle") end,
        "file:seek: bad argument #2 (invalid whence (\"set\", \"cur\" or \"end\"))")
      assert.has_error(function() f:seek("x") end,
        "file:seek: bad argument #1 (integer expected, got string)")
      check_fail("EINVAL", f:seek(-10))
      assert.has_error(function() f.read({}, 1) end,
        "file:read: bad argument #1 (file expected, got table)")
      f:close()
    end)
  end)

  describe("cancellation", function()
    it("cancelling a task in a request leaks no descriptor and no task", function()
      local p = dir .. "/big"
      assert(fs.write(p, string.rep("z", 32 * 1024 * 1024)))
      local base = open_fds()
      for _ = 1, 5 do
        local t = crt.spawn(function() return fs.read(p) end)
        crt.yield() -- t now waits in the first request
        t:cancel()
        local ok, err = pcall(t.await, t)
        assert.is_false(ok)
        assert.are.equal(crt.Cancelled, err)
      end
      for _, fn in ipairs{function() return fs.open(p, "r") end,
                          function() return fs.write(dir .. "/w", "data") end,
                          function() return fs.stat(p) end,
                          function() return fs.readdir(dir) end} do
        local t = crt.spawn(fn)
        crt.yield()
        t:cancel()
        assert.is_false(pcall(t.await, t))
      end
      assert.is_true(wait_fds(base))
      -- The directory is still usable afterwards.
      assert.are.equal(32 * 1024 * 1024, fs.stat(p).size)
    end)

    it("a file whose read was cancelled is still closed", function()
      local p = dir .. "/f"
      assert(fs.write(p, string.rep("q", 4 << 20)))
      local base = open_fds()
      local f = assert(fs.open(p, "r"))
      local t = crt.spawn(function() return f:read("a") end)
      crt.yield()
      t:cancel()
      assert.is_false(pcall(t.await, t))
      f = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_true(wait_fds(base))
    end)
  end)
end)
