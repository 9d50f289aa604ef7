/*
 * tests/c/test_codec.c - unit tests of the value codec (runtime/codec.c,
 * runtime/buf.c, bindings/codec.c): round trips between two Lua states,
 * error messages and paths, hostile and truncated input, memory bounds and
 * allocation failures.
 *
 * Single-threaded. Each test makes its own Lua states; main() runs the table
 * of tests in order and exits non-zero if any failed.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "buf.h"
#include "codec.h"
#include "lib.h"

/* An allocator that counts bytes, remembers the peak and can fail on demand:
 * `failafter` > 0 lets that many growing allocations succeed, then fails them
 * all; < 0 never fails. Lua requires shrinking never to fail. */
typedef struct mem {
  size_t cur, peak;
  long failafter;
} mem;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mem *m = ud;
  if (!ptr)
    osize = 0;
  if (nsize == 0) {
    free(ptr);
    m->cur -= osize;
    return NULL;
  }
  if (nsize > osize && m->failafter >= 0) {
    if (m->failafter == 0)
      return NULL;
    m->failafter--;
  }
  void *p = realloc(ptr, nsize);
  if (!p)
    return NULL;
  m->cur = m->cur - osize + nsize;
  if (m->cur > m->peak)
    m->peak = m->cur;
  return p;
}

static mem mems[4];
static int nstates;

static lua_State *newstate(void) {
  mem *m = &mems[nstates++ % 4];
  memset(m, 0, sizeof *m);
  m->failafter = -1;
  lua_State *L = lua_newstate(alloc, m);
  luaL_openlibs(L);
  crt_open_codec(L);
  lua_setglobal(L, "codec");
  return L;
}

static mem *memof(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

/* Run a chunk; on error print it and return 0. Results stay on the stack. */
static int run(lua_State *L, const char *code) {
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "  lua error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Run a chunk that must return true. */
static int truth(lua_State *L, const char *code) {
  int top = lua_gettop(L);
  if (!run(L, code))
    return 0;
  int ok = lua_toboolean(L, top + 1);
  if (!ok)
    fprintf(stderr, "  not true: %s\n", code);
  lua_settop(L, top);
  return ok;
}

/* Evaluate `expr` (which may produce several values) in A, encode them, and
 * decode in B into the global table `got` (with got.n). Returns 1 on success;
 * on failure leaves the error message in errbuf. */
static char errbuf[512];

static int xfer(lua_State *A, lua_State *B, const char *expr, int flags) {
  char code[4096];
  snprintf(code, sizeof code, "return %s", expr);
  int top = lua_gettop(A);
  if (!run(A, code))
    return 0;
  int n = lua_gettop(A) - top;
  crt_buf b;
  crt_buf_init(&b);
  int r = crt_codec_encode(A, top + 1, n, &b, 0, "test: cannot send", 0);
  if (r != 0) {
    snprintf(errbuf, sizeof errbuf, "%s", lua_tostring(A, -1));
    lua_settop(A, top);
    crt_buf_free(&b);
    return 0;
  }
  lua_settop(A, top);
  int btop = lua_gettop(B);
  int got = crt_codec_decode(B, b.data, b.len, flags);
  crt_buf_free(&b);
  if (got < 0) {
    snprintf(errbuf, sizeof errbuf, "%s", lua_tostring(B, -1));
    lua_settop(B, btop);
    return 0;
  }
  if (got != n) {
    snprintf(errbuf, sizeof errbuf, "decoded %d values, encoded %d", got, n);
    lua_settop(B, btop);
    return 0;
  }
  lua_createtable(B, n, 1);
  lua_insert(B, btop + 1);
  for (int i = n; i >= 1; i--)
    lua_rawseti(B, btop + 1, i);
  lua_pushinteger(B, n);
  lua_setfield(B, -2, "n");
  lua_setglobal(B, "got");
  return 1;
}

/* Encode the values of expr in L into b (reset first). */
static int enc(lua_State *L, const char *expr, crt_buf *b) {
  char code[4096];
  snprintf(code, sizeof code, "return %s", expr);
  int top = lua_gettop(L);
  if (!run(L, code))
    return -1;
  crt_buf_reset(b);
  int r = crt_codec_encode(L, top + 1, lua_gettop(L) - top, b, 0, "test: cannot send", 0);
  if (r != 0)
    fprintf(stderr, "  encode failed: %s\n", lua_tostring(L, -1));
  lua_settop(L, top);
  return r;
}

/* The error message of encoding expr with what/argbase, or NULL on success. */
static const char *encerr(lua_State *L, const char *expr, const char *what, int argbase) {
  char code[4096];
  snprintf(code, sizeof code, "return %s", expr);
  int top = lua_gettop(L);
  if (!run(L, code))
    return "(chunk failed)";
  crt_buf b;
  crt_buf_init(&b);
  int r = crt_codec_encode(L, top + 1, lua_gettop(L) - top, &b, 0, what, argbase);
  const char *msg = NULL;
  if (r != 0) {
    snprintf(errbuf, sizeof errbuf, "%s", lua_tostring(L, -1));
    msg = errbuf;
  }
  crt_buf_free(&b);
  lua_settop(L, top);
  return msg;
}

/* ----------------------------------------------------------------- tests */

static void test_scalars(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(xfer(A, B,
             "nil, true, false, 0, 1, -1, math.maxinteger, math.mininteger, 2^53, 0.5, -0.0, "
             "1/0, -1/0, 0/0, math.pi, 5e-324, 3.0, 'x'",
             0));
  CHECK(truth(B, "return got.n == 18 and got[1] == nil and got[2] == true and got[3] == false"));
  CHECK(truth(B, "for i = 4, 8 do if math.type(got[i]) ~= 'integer' then return false end end "
                 "return got[4] == 0 and got[5] == 1 and got[6] == -1 and "
                 "got[7] == math.maxinteger and got[8] == math.mininteger"));
  CHECK(truth(B, "for i = 9, 17 do if math.type(got[i]) ~= 'float' then return false end end "
                 "return got[9] == 2^53 and got[10] == 0.5 and 1/got[11] == -math.huge and "
                 "got[12] == math.huge and got[13] == -math.huge and got[14] ~= got[14] and "
                 "got[15] == math.pi and got[16] == 5e-324 and got[17] == 3.0 and got[18] == 'x'"));
  lua_close(A);
  lua_close(B);
}

static void test_nan_payload(void) {
  lua_State *A = newstate(), *B = newstate();
  uint64_t bits = UINT64_C(0xFFF8DEADBEEF1234), back;
  double x;
  memcpy(&x, &bits, 8);
  lua_pushnumber(A, x);
  crt_buf b;
  crt_buf_init(&b);
  CHECK(crt_codec_encode(A, -1, 1, &b, 0, "t", 0) == 0);
  CHECK(crt_codec_decode(B, b.data, b.len, 0) == 1);
  double y = lua_tonumber(B, -1);
  memcpy(&back, &y, 8);
  CHECK(back == bits);
  crt_buf_free(&b);
  lua_close(A);
  lua_close(B);
}

static void test_strings(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(xfer(A, B,
             "'', 'a\\0b\\0', (function() local t = {} for i = 0, 255 do t[#t+1] = string.char(i) "
             "end return table.concat(t) end)(), string.rep('xyz', 400000)",
             0));
  CHECK(truth(B, "return got[1] == '' and got[2] == 'a\\0b\\0' and #got[3] == 256 and "
                 "got[3]:byte(1) == 0 and got[3]:byte(256) == 255 and "
                 "got[4] == string.rep('xyz', 400000)"));
  lua_close(A);
  lua_close(B);
}

static void test_tables(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(run(A, "K = {} t = {1, 2, nil, 4, x = 'y', [1.5] = 'f', [true] = 'b', [false] = {}, "
               "nested = {a = {b = {c = {1, 2, 3}}}}, [-7] = 'neg', [K] = 'tablekey', "
               "[2^63] = 'big float key'} "
               "for i = 1, 300 do t['k' .. i] = i end "
               "t.arr = {} for i = 1, 1000 do t.arr[i] = i * 2 end"));
  CHECK(xfer(A, B, "t", 0));
  CHECK(truth(B, "local t = got[1] return t[1] == 1 and t[2] == 2 and t[3] == nil and "
                 "t[4] == 4 and t.x == 'y' and t[1.5] == 'f' and t[true] == 'b' and "
                 "type(t[false]) == 'table' and t.nested.a.b.c[3] == 3 and t[-7] == 'neg' and "
                 "t[2^63] == 'big float key'"));
  CHECK(truth(B, "local t = got[1] for i = 1, 300 do if t['k' .. i] ~= i then return false end "
                 "end for i = 1, 1000 do if t.arr[i] ~= i * 2 then return false end end "
                 "return #t.arr == 1000"));
  CHECK(truth(B, "local n = 0 for k, v in pairs(got[1]) do if type(k) == 'table' then n = n + 1 "
                 "assert(v == 'tablekey') end end return n == 1"));
  lua_close(A);
  lua_close(B);
}

/* Canonical text of a tree of tables (sorted keys), to compare the copy in
 * another state with the original. */
static const char *const dumper =
    "function dump(v) if type(v) ~= 'table' then return math.type(v) == 'float' and "
    "string.format('%a', v) or tostring(v) end local ks = {} for k in pairs(v) do ks[#ks + 1] "
    "= k end table.sort(ks, function(a, b) return tostring(a) < tostring(b) end) local out = "
    "{} for _, k in ipairs(ks) do out[#out + 1] = dump(k) .. '=' .. dump(v[k]) end return '{' "
    ".. table.concat(out, ',') .. '}' end";

/* Array items in every layout Lua may keep them: array part, hash part,
 * holes, mixed with other keys. */
static void test_table_shapes(void) {
  static const char *const shapes[] = {
      "{}",
      "{1, 2, 3}",
      "{1, nil, 3}",
      "{nil, nil, 3}",
      "{1, 2, 3, nil, nil, nil, 7}",
      "(function() local t = {} t[3] = 3 t[2] = 2 t[1] = 1 return t end)()",
      "(function() local t = {} for i = 10, 1, -1 do t[i] = i end t.x = 1 return t end)()",
      "(function() local t = {1, 2, 3, 4, 5, 6, 7, 8} t[4] = nil t[9] = 9 t[20] = 20 return t "
      "end)()",
      "(function() local t = {x = 1, y = 2, 1, 2} t[3] = 3 t[0] = 0 t[-1] = -1 return t end)()",
      "(function() local t = {} for i = 1, 100 do t[i] = i end for i = 1, 100, 3 do t[i] = nil "
      "end return t end)()",
      "(function() local t = {} for i = 1, 300 do t[i * 2] = i end t[1] = 1 return t end)()",
      "(function() local t = {n = 3, 'a', 'b', 'c', [4.0] = 'd', [5.5] = 'e'} return t end)()",
      "(function() local t = {} t[1] = 1 t[2^53] = 2 t[math.maxinteger] = 3 t[math.mininteger] "
      "= 4 return t end)()",
      NULL};
  lua_State *A = newstate(), *B = newstate();
  CHECK(run(A, dumper));
  CHECK(run(B, dumper));
  for (int i = 0; shapes[i]; i++) {
    char code[1024];
    snprintf(code, sizeof code, "return dump(%s)", shapes[i]);
    CHECK(run(A, code));
    char want[8192];
    snprintf(want, sizeof want, "%s", lua_tostring(A, -1));
    lua_pop(A, 1);
    CHECK(xfer(A, B, shapes[i], 0));
    CHECK(run(B, "return dump(got[1])"));
    CHECK_STR(lua_tostring(B, -1), want);
    lua_pop(B, 1);
  }
  lua_close(A);
  lua_close(B);
}

static void test_shared_and_cycles(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(run(A, "s = {v = 1} c = {} c.self = c c.list = {c, s, s} c.s = s c[s] = s "
               "many = {} local shared = {} for i = 1, 500 do many[i] = {shared, i} end "
               "many.shared = shared"));
  CHECK(xfer(A, B, "c, s, many", 0));
  CHECK(truth(B, "local c, s = got[1], got[2] return c.self == c and c.list[1] == c and "
                 "c.list[2] == s and c.list[3] == s and c.s == s and c[s] == s and s.v == 1"));
  CHECK(truth(B, "local m = got[3] for i = 1, 500 do if m[i][1] ~= m.shared or m[i][2] ~= i "
                 "then return false end end return true"));
  /* Identity is per message, not across messages. */
  CHECK(xfer(A, B, "s", 0));
  CHECK(truth(B, "return got[1].v == 1"));
  lua_close(A);
  lua_close(B);
}

static void test_functions(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(run(A, "local n = 10 local t = {k = 'v'} "
               "function add(x) return x + n + #t.k end "
               "local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end "
               "F = fact "
               "local count = 0 inc = function() count = count + 1 return count end "
               "get = function() return count end "
               "readg = function() return marker end "
               "withlib = function(...) return string.format('%d-%s', ...) end "
               "local G = _G viaG = function() return G.marker end "
               "local big = {} for i = 1, 400 do big[i] = 'u' .. i end "
               "bigf = function() return big[400] end"));
  CHECK(run(B, "marker = 'B globals'"));
  CHECK(!xfer(A, B, "add", 0));
  CHECK(strstr(errbuf, "functions are not allowed") != NULL);
  CHECK(xfer(A, B, "add, F, {inc = inc, get = get}, readg, withlib, viaG, bigf",
             CRT_CODEC_FUNCTIONS));
  CHECK(truth(B, "return got[1](1) == 12 and got[2](5) == 120"));
  CHECK(truth(B, "local c = got[3] c.inc() c.inc() return c.get() == 2"));
  CHECK(truth(B, "return got[4]() == 'B globals' and got[6]() == 'B globals'"));
  CHECK(truth(B, "return got[5](7, 'x') == '7-x' and got[7]() == 'u400'"));
  /* Debug info survives for tracebacks. */
  CHECK(truth(B, "local info = debug.getinfo(got[1], 'S') return info.source:find('add') or "
                 "info.linedefined > 0"));
  lua_close(A);
  lua_close(B);
}

static void test_c_functions(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(xfer(A, B,
             "print, string.format, math.floor, table.concat, io.write, os.time, "
             "coroutine.wrap, utf8.char, pairs, require",
             CRT_CODEC_FUNCTIONS));
  CHECK(truth(B, "return got[1] == print and got[2] == string.format and got[3] == math.floor "
                 "and got[4] == table.concat and got[5] == io.write and got[6] == os.time and "
                 "got[7] == coroutine.wrap and got[8] == utf8.char and got[9] == pairs and "
                 "got[10] == require"));
  CHECK(!xfer(A, B, "print", 0));
  CHECK(strstr(errbuf, "functions are not allowed") != NULL);
  CHECK(!xfer(A, B, "io.stdout.write", CRT_CODEC_FUNCTIONS));
  CHECK_STR(errbuf, "test: cannot send value (C function)");
  lua_close(A);
  lua_close(B);
}

/* The fast path (scalars and flat tables, see codec.c) writes the same bytes
 * as the full encoder, and what it decodes equals the original. */
static void test_fast_path(void) {
  lua_State *A = newstate(), *B = newstate();
  static const char *const exprs[] = {
      "nil",
      "true, false, 0, -1, math.maxinteger, math.mininteger, 0.5, -0.0, 1/0, 'x', ''",
      "'with\\0zero', ('y'):rep(300)",
      "{}",
      "{i = 1, s = 'hello'}",
      "{1, 2, 3, x = true, [2.5] = 'f', [false] = 0}",
      "{1, nil, 3}",
      "{[1] = 'a', [3] = 'c', [-1] = 'm'}",
      "(function() local t = {} for i = 1, 200 do t[i] = i; t['k' .. i] = i * 0.5 end "
      "return t end)()",
      "{a = 1}, 7, {b = 2}, 'z', {c = 3}",
  };
  const char *deq = "function deq(a, b) if type(a) ~= type(b) then return false end "
                    "if type(a) ~= 'table' then return a == b or (a ~= a and b ~= b) end "
                    "for k, v in pairs(a) do if not deq(v, b[k]) then return false end end "
                    "for k in pairs(b) do if a[k] == nil then return false end end "
                    "return true end";
  CHECK(run(B, deq));
  for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
    char code[4096];
    snprintf(code, sizeof code, "return %s", exprs[i]);
    int top = lua_gettop(A);
    CHECK(run(A, code));
    int n = lua_gettop(A) - top;
    crt_buf fast, full;
    crt_buf_init(&fast);
    crt_buf_init(&full);
    CHECK(crt_codec_encode(A, top + 1, n, &fast, 0, "t", 0) == 0);
    CHECK(crt_codec_encode(A, top + 1, n, &full, CRT_CODEC_NOFAST, "t", 0) == 0);
    if (fast.len != full.len || memcmp(fast.data, full.data, fast.len) != 0) {
      fprintf(stderr, "  fast and full encodings differ: %s\n", exprs[i]);
      CHECK(0);
    }
    lua_settop(A, top);
    static const int dflags[] = {0, CRT_CODEC_MAYRAISE, CRT_CODEC_NOFAST};
    for (int k = 0; k < 3; k++) {
      int btop = lua_gettop(B);
      CHECK(crt_codec_decode(B, fast.data, fast.len, dflags[k]) == n);
      lua_createtable(B, n, 0);
      lua_insert(B, btop + 1);
      for (int v = n; v >= 1; v--)
        lua_rawseti(B, btop + 1, v);
      lua_setglobal(B, "got");
      snprintf(code, sizeof code,
               "local want = table.pack(%s) for v = 1, want.n do "
               "if not deq(want[v], got[v]) then return false end end return true",
               exprs[i]);
      if (!truth(B, code)) {
        fprintf(stderr, "  fast path round trip failed: %s (flags %d)\n", exprs[i], dflags[k]);
        CHECK(0);
      }
    }
    crt_buf_free(&fast);
    crt_buf_free(&full);
  }
  /* What the fast path leaves to the full codec: the same table twice (a back
   * reference), nested tables, table keys, metatables. */
  CHECK(xfer(A, B, "(function() local t = {1} return t, t end)()", 0));
  CHECK(truth(B, "return rawequal(got[1], got[2]) and got[1][1] == 1"));
  CHECK(xfer(A, B, "{a = {b = {1}}, [{}] = 2}", CRT_CODEC_MAYRAISE));
  CHECK(truth(B, "local k = next(got[1], nil) return got[1].a.b[1] == 1"));
  CHECK(!xfer(A, B, "setmetatable({}, {})", 0));
  CHECK(strstr(errbuf, "unregistered metatable") != NULL);
  /* Without CRT_CODEC_MAYRAISE a string or table goes through the protected
   * decoder, which also catches a malformed one. */
  static const unsigned char badstr[] = {1, 0, 1, 5, 9, 'a'};
  CHECK(crt_codec_decode(B, (const char *)badstr, sizeof badstr, CRT_CODEC_MAYRAISE) == -1);
  lua_pop(B, 1);
  static const unsigned char nilkey[] = {1, 0, 1, 6, 0, 1, 0, 2};
  CHECK(crt_codec_decode(B, (const char *)nilkey, sizeof nilkey, CRT_CODEC_MAYRAISE) == -1);
  lua_pop(B, 1);
  /* A message of one string written without a Lua state. */
  crt_buf b;
  crt_buf_init(&b);
  CHECK(crt_codec_encode_string(&b, "boom\0x", 6) == 0);
  CHECK(crt_codec_decode(B, b.data, b.len, 0) == 1);
  size_t len;
  const char *s = lua_tolstring(B, -1, &len);
  CHECK(len == 6 && memcmp(s, "boom\0x", 6) == 0);
  lua_pop(B, 1);
  crt_buf_free(&b);
  lua_close(A);
  lua_close(B);
}

static void test_metatables(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(run(A, "P = {__index = {len = function(p) return p.x + p.y end}} "
               "codec.register('Point', P) p = setmetatable({x = 1, y = 2}, P)"));
  CHECK(!xfer(A, B, "p", 0));
  CHECK_STR(errbuf, "metatable 'Point' is not registered in this state (crt.codec.register)");
  CHECK(run(B, "P = {__index = {len = function(p) return p.x + p.y end}} "
               "assert(codec.register('Point', P) == P)"));
  CHECK(xfer(A, B, "p, {p, p}", 0));
  CHECK(truth(B, "return getmetatable(got[1]) == P and got[1]:len() == 3 and "
                 "got[2][1] == got[2][2]"));
  CHECK_STR(encerr(A, "{a = setmetatable({}, {})}", "test: cannot send", 0),
            "test: cannot send value .a (table with unregistered metatable)");
  /* Re-registering moves the name. */
  CHECK(run(A, "Q = {} codec.register('Point', Q)"));
  CHECK(encerr(A, "p", "t:", 0) != NULL);
  CHECK(encerr(A, "setmetatable({}, Q)", "t:", 0) == NULL);
  lua_close(A);
  lua_close(B);
}

static void test_error_paths(void) {
  lua_State *L = newstate();
  CHECK_STR(encerr(L, "{a = {b = {1, 2, io.stdout}}}", "crt.codec.encode: cannot encode", 0),
            "crt.codec.encode: cannot encode value .a.b[3] (userdata)");
  CHECK_STR(encerr(L, "1, {conn = io.stdout}", "crt.thread.run: cannot send", 0),
            "crt.thread.run: cannot send argument #2 .conn (userdata)");
  CHECK_STR(encerr(L, "{conn = io.stdout}", "crt.thread.run: cannot send", 1),
            "crt.thread.run: cannot send argument #2 .conn (userdata)");
  CHECK(run(L, "local conn = io.stdout f = function() return conn end "
               "local t = {x = {conn}} g = function() return t end"));
  CHECK_STR(encerr(L, "f", "crt.thread.run: cannot send", 1),
            "crt.thread.run: cannot send argument #2 upvalue 'conn' (userdata)");
  CHECK_STR(encerr(L, "f", "x", 0), "x value upvalue 'conn' (userdata)");
  CHECK_STR(encerr(L, "{h = {g}}", "x", 0), "x value .h[1] upvalue 't'.x[1] (userdata)");
  CHECK_STR(encerr(L, "io.stdout", "x", 0), "x value (userdata)");
  CHECK_STR(encerr(L, "{[io.stdout] = 1}", "x", 0), "x value {key} (userdata)");
  CHECK_STR(encerr(L, "{a = {[{io.stdout}] = 1}}", "x", 0), "x value .a{key}[1] (userdata)");
  CHECK_STR(encerr(L,
                   "{['odd key'] = {['end'] = {[2.5] = {[true] = {[{}] = {coroutine.create("
                   "print)}}}}}}",
                   "x", 0),
            "x value [\"odd key\"][\"end\"][2.5][true][<table>][1] (thread)");
  CHECK_STR(encerr(L, "{f = getmetatable(io.stdout).__index.write}", "x", 0),
            "x value .f (C function)");
  CHECK_STR(encerr(L, "{[-3] = string.gmatch('a', 'a')}", "x", 0), "x value [-3] (C function)");
  lua_close(L);
}

static void test_depth(void) {
  lua_State *A = newstate(), *B = newstate();
  char code[256];
  snprintf(code, sizeof code,
           "function nest(n) local t = {} local top = t for i = 2, n do t[1] = {} t = t[1] end "
           "return top end");
  CHECK(run(A, code));
  CHECK(xfer(A, B, "nest(200)", 0));
  const char *m = encerr(A, "nest(201)", "x", 0);
  CHECK(m &&
        strstr(m, "x value [1][1][1][1][1][1][1][1]...[1][1][1][1][1][1][1][1] (too deep") == m);
  /* A hostile message nested deeper than the limit. */
  unsigned char buf[1024];
  size_t n = 0;
  buf[n++] = 1;
  buf[n++] = 0;
  buf[n++] = 1;
  for (int i = 0; i < 300; i++) {
    buf[n++] = 6; /* table, one array item */
    buf[n++] = 1;
    buf[n++] = 0;
  }
  buf[n++] = 0;
  CHECK(crt_codec_decode(B, (char *)buf, n, 0) == -1);
  CHECK(strstr(lua_tostring(B, -1), "too deep") != NULL);
  lua_pop(B, 1);
  /* Deep functions: each closure counts as a level. */
  CHECK(run(A, "local f = function() return 1 end for i = 1, 250 do local g = f "
               "f = function() return g() end end deepf = f"));
  CHECK(encerr(A, "deepf", "x", 0) != NULL);
  lua_close(A);
  lua_close(B);
}

static void test_buffer_preserved(void) {
  lua_State *L = newstate();
  crt_buf b;
  crt_buf_init(&b);
  CHECK(crt_buf_append(&b, "XYZ", 3) == 0);
  CHECK(run(L, "return {1, 2, {3, io.stdout}}"));
  CHECK(crt_codec_encode(L, -1, 1, &b, 0, "x", 0) == -1);
  CHECK(b.len == 3 && memcmp(b.data, "XYZ", 3) == 0);
  lua_settop(L, 0);
  /* Encoding appends: the decoder gets the bytes after a caller's prefix. */
  lua_pushinteger(L, 42);
  lua_pushstring(L, "s");
  CHECK(crt_codec_encode(L, 1, 2, &b, 0, "x", 0) == 0);
  lua_settop(L, 0);
  CHECK(crt_codec_decode(L, b.data + 3, b.len - 3, 0) == 2);
  CHECK(lua_tointeger(L, 1) == 42 && strcmp(lua_tostring(L, 2), "s") == 0);
  lua_settop(L, 0);
  /* Zero values. */
  crt_buf_reset(&b);
  CHECK(crt_codec_encode(L, 1, 0, &b, 0, "x", 0) == 0);
  CHECK(crt_codec_decode(L, b.data, b.len, 0) == 0);
  CHECK(lua_gettop(L) == 0);
  crt_buf_free(&b);
  lua_close(L);
}

/* Decode must fail cleanly on every proper prefix, and never crash on any
 * single-byte change of a valid message. */
static void test_truncation_and_mutation(void) {
  lua_State *A = newstate(), *B = newstate();
  static const char *const exprs[] = {
      "{1, 2.5, 'str', {x = {y = {}}}, true, false, [{}] = 'k'}",
      "(function() local c = {} c.c = c c[1] = {c, c} return c end)()",
      "function(a) local u = {1} return function() return u, a end end",
      "(function() local n = 0 return {function() n = n + 1 end, function() return n end} end)()",
      "string.format, 'x', -12345678901234, 0/0",
      NULL};
  crt_buf b;
  crt_buf_init(&b);
  for (int e = 0; exprs[e]; e++) {
    CHECK(enc(A, exprs[e], &b) == 0);
    int top = lua_gettop(B);
    CHECK(crt_codec_decode(B, b.data, b.len, CRT_CODEC_FUNCTIONS) >= 1);
    lua_settop(B, top);
    for (size_t n = 0; n < b.len; n++) {
      char *copy = malloc(n ? n : 1); /* exact size, so ASan sees overreads */
      memcpy(copy, b.data, n);
      int r = crt_codec_decode(B, copy, n, CRT_CODEC_FUNCTIONS);
      free(copy);
      CHECK(r == -1);
      lua_settop(B, top);
    }
    /* Mutations, without functions: bytecode itself is not verified by Lua
     * (see codec.c), so only trusted input may be decoded with functions. */
    for (size_t i = 0; i < b.len; i++) {
      for (int v = 0; v < 256; v += 17) {
        char *copy = malloc(b.len);
        memcpy(copy, b.data, b.len);
        copy[i] = (char)v;
        crt_codec_decode(B, copy, b.len, 0);
        free(copy);
        lua_settop(B, top);
      }
    }
  }
  /* Trailing bytes. */
  CHECK(enc(A, "1", &b) == 0);
  crt_buf_append(&b, "\0", 1);
  CHECK(crt_codec_decode(B, b.data, b.len, 0) == -1);
  CHECK(strstr(lua_tostring(B, -1), "trailing") != NULL);
  crt_buf_free(&b);
  lua_close(A);
  lua_close(B);
}

static void test_random_input(void) {
  lua_State *L = newstate();
  uint64_t s = 0x1234567;
  unsigned char buf[96];
  for (int i = 0; i < 200000; i++) {
    size_t n = (size_t)(s % sizeof buf);
    for (size_t j = 0; j < n; j++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      /* Mostly small bytes, so that tags and counts are often plausible. */
      buf[j] = (unsigned char)((s & 0x300) ? s % 16 : s);
    }
    if (n >= 2) {
      buf[0] = 1;
      buf[1] &= 1;
    }
    int top = lua_gettop(L);
    crt_codec_decode(L, (char *)buf, n, 0);
    lua_settop(L, top);
    s = s * 6364136223846793005u + 1442695040888963407u;
    if (i % 10000 == 0)
      lua_gc(L, LUA_GCCOLLECT);
  }
  lua_close(L);
}

/* Declared counts far beyond the input must not be allocated. */
static void test_hostile_sizes(void) {
  lua_State *L = newstate();
  static const unsigned char cases[][24] = {
      /* table with narr = 2^31-1 */
      {1, 0, 1, 6, 0xff, 0xff, 0xff, 0xff, 0x07, 0, 0},
      /* table with nhash = 2^28 */
      {1, 0, 1, 6, 0, 0x80, 0x80, 0x80, 0x80, 0x01, 0},
      /* string of 2^62 bytes */
      {1, 0, 1, 5, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 'x'},
      /* 2^31 values */
      {1, 0, 0x80, 0x80, 0x80, 0x80, 0x08, 0},
      /* refs: 2^40 objects */
      {1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 6, 0, 0},
      /* an overlong varint */
      {1, 0, 1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
      /* reference without REFS flag, reference out of range */
      {1, 0, 1, 8, 0},
      {1, 1, 1, 1, 6, 1, 0, 8, 5},
      /* nested tables each claiming the rest of the input */
      {1, 0, 1, 6, 9, 0, 6, 7, 0, 6, 6, 0, 6, 5, 0, 0, 0, 0, 0, 0, 0, 0},
      /* nil key, NaN key */
      {1, 0, 1, 6, 0, 1, 0, 2},
      {1, 0, 1, 6, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f, 2},
      /* bad version, bad flags, bad tag, upvalue tags outside functions */
      {2, 0, 0},
      {1, 4, 0},
      {1, 0, 1, 0x7f},
      {1, 0, 1, 12},
      {1, 0, 1, 13, 0, 1},
      /* unknown C function, unknown channel, channel */
      {1, 0, 1, 10, 3, 'a', '.', 'b'},
      {1, 0, 1, 11, 9, 9, 9, 9, 9, 9, 9, 9},
      /* function with garbage bytecode */
      {1, 0, 1, 9, 4, 0x1b, 'L', 'u', 'a', 0},
      /* empty */
      {0},
  };
  static const size_t lens[] = {11, 11, 14, 8, 12, 14, 5, 9,  22, 8,
                                16, 3,  3,  4, 4,  6,  8, 12, 10, 0};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    mem *m = memof(L);
    lua_gc(L, LUA_GCCOLLECT);
    size_t before = m->cur;
    m->peak = m->cur;
    int r = crt_codec_decode(L, (const char *)cases[i], lens[i], CRT_CODEC_FUNCTIONS);
    if (r != -1)
      fprintf(stderr, "  case %zu decoded\n", i);
    CHECK(r == -1);
    CHECK(m->peak - before < 64 * 1024);
    lua_pop(L, 1);
  }
  lua_close(L);
}

/* Every allocation failure during encode and decode is reported, never a
 * crash, and the state stays usable. */
static void test_out_of_memory(void) {
  lua_State *A = newstate(), *B = newstate();
  CHECK(run(A, "local s = {} v = {s, s, {a = 'b', [{}] = function() return s end}, "
               "string.rep('x', 1000), print} for i = 1, 200 do v[#v + 1] = {i} end"));
  crt_buf b;
  crt_buf_init(&b);
  CHECK(enc(A, "v", &b) == 0);
  int okd = 0, oke = 0;
  for (long k = 0; k < 3000; k++) {
    memof(B)->failafter = k;
    int top = lua_gettop(B);
    int r = crt_codec_decode(B, b.data, b.len, CRT_CODEC_FUNCTIONS);
    memof(B)->failafter = -1;
    okd += r == 1;
    lua_settop(B, top);
  }
  for (long k = 0; k < 200; k++) {
    crt_buf o;
    crt_buf_init(&o);
    lua_getglobal(A, "v");
    memof(A)->failafter = k;
    int r = crt_codec_encode(A, -1, 1, &o, 0, "x", 0);
    memof(A)->failafter = -1;
    oke += r == 0;
    if (r != 0)
      CHECK(o.len == 0);
    lua_settop(A, 0);
    crt_buf_free(&o);
  }
  if (!(okd > 0 && oke > 0))
    fprintf(stderr, "  okd %d oke %d\n", okd, oke);
  CHECK(okd > 0 && oke > 0);
  CHECK(xfer(A, B, "v", CRT_CODEC_FUNCTIONS));
  CHECK(truth(B, "return got[1][1] == got[1][2] and got[1][205][1] == 200 and got[1][5] == print"));
  crt_buf_free(&b);
  lua_close(A);
  lua_close(B);
}

static void test_binding(void) {
  lua_State *L = newstate();
  CHECK(truth(L, "local s = codec.encode({1, 'a', {b = true}}) local v = codec.decode(s) "
                 "return type(s) == 'string' and v[1] == 1 and v[3].b == true"));
  CHECK(truth(L, "local ok, e = pcall(codec.decode, nil) "
                 "return e == 'crt.codec.decode: bad argument #1 (string expected, got nil)'"));
  CHECK(truth(L, "local ok, e = pcall(codec.decode, codec.encode(1), 5) "
                 "return e == 'crt.codec.decode: bad argument #2 (table expected, got number)'"));
  CHECK(truth(L, "local ok, e = pcall(codec.encode) "
                 "return e == 'crt.codec.encode: bad argument #1 (value expected)'"));
  CHECK(truth(L, "local ok, e = pcall(codec.encode, {a = {b = {1, 2, io.stdout}}}) "
                 "return e == 'crt.codec.encode: cannot encode value .a.b[3] (userdata)'"));
  CHECK(truth(L, "local s = codec.encode({1, 2, 3, 4, 5, 6}) local ok, e = pcall(codec.decode, "
                 "s:sub(1, 7)) return e == 'crt.codec.decode: malformed input (truncated at "
                 "byte 7)'"));
  CHECK(truth(L, "local f = function() return 1 end local ok, e = pcall(codec.decode, "
                 "codec.encode(f)) return not ok and e:find('functions are not allowed') and "
                 "codec.decode(codec.encode(f), {functions = true})() == 1"));
  CHECK(truth(L, "local ok, e = pcall(codec.register, 1, {}) return e == "
                 "'crt.codec.register: bad argument #1 (string expected, got number)'"));
  /* A finalizer that encodes while encode runs gets its own buffer. */
  CHECK(truth(L, "local big = {} for i = 1, 2000 do big[i] = {i} end "
                 "for i = 1, 200 do setmetatable({}, {__gc = function() "
                 "assert(codec.decode(codec.encode({i}))[1] == i) end}) end "
                 "for i = 1, 50 do assert(#codec.decode(codec.encode(big)) == 2000) end "
                 "collectgarbage() return true"));
  lua_close(L);
}

static void test_memory_bound(void) {
  /* A valid message's decoded size is proportional to its length. */
  lua_State *A = newstate(), *B = newstate();
  crt_buf b;
  crt_buf_init(&b);
  CHECK(enc(A, "(function() local t = {} for i = 1, 10000 do t[i] = {} end return t end)()", &b) ==
        0);
  mem *m = memof(B);
  lua_gc(B, LUA_GCCOLLECT);
  size_t before = m->cur;
  m->peak = m->cur;
  CHECK(crt_codec_decode(B, b.data, b.len, 0) == 1);
  CHECK(m->peak - before < b.len * 200);
  crt_buf_free(&b);
  lua_close(A);
  lua_close(B);
}

typedef struct test {
  const char *name;
  void (*fn)(void);
} test;

static const test tests[] = {
    {"scalars", test_scalars},
    {"nan_payload", test_nan_payload},
    {"strings", test_strings},
    {"tables", test_tables},
    {"table_shapes", test_table_shapes},
    {"shared_and_cycles", test_shared_and_cycles},
    {"functions", test_functions},
    {"c_functions", test_c_functions},
    {"fast_path", test_fast_path},
    {"metatables", test_metatables},
    {"error_paths", test_error_paths},
    {"depth", test_depth},
    {"buffer_preserved", test_buffer_preserved},
    {"truncation_and_mutation", test_truncation_and_mutation},
    {"random_input", test_random_input},
    {"hostile_sizes", test_hostile_sizes},
    {"out_of_memory", test_out_of_memory},
    {"binding", test_binding},
    {"memory_bound", test_memory_bound},
};

int main(int argc, char **argv) {
  alarm(300); /* a hang is a failure */
  int failed = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
      continue;
    int before = check_failures;
    tests[i].fn();
    int bad = check_failures != before;
    failed += bad;
    printf("%-28s %s\n", tests[i].name, bad ? "FAIL" : "ok");
    fflush(stdout);
  }
  printf("%d failed\n", failed);
  return failed ? 1 : 0;
}
