/*
 * fuzz/fuzz_roundtrip.c - libFuzzer target for crt_codec_encode: the input
 * is a little program that builds Lua values in one state (tables in every
 * layout, holes, shared tables, cycles, all number subtypes and strange
 * floats, binary strings, registered metatables, functions with upvalues,
 * channels); they are encoded, decoded into a second state, and a canonical
 * dump of both sides must match.
 *
 * Single-threaded; two Lua states for the whole run. Functions come only from
 * fuzz_funcs.h (see fuzz_decode.c for why bytecode is allow-listed), so the
 * codec is built with CRT_CODEC_FUZZING here too.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "allowlist.h"
#include "fuzz_funcs.h"

int crt_chan_stub_push(lua_State *L, uint64_t id);

static lua_State *A, *B;

/* The canonical dump: tables numbered in first-visit order, keys sorted by
 * their text, so that both states print the same graph the same way. */
static const char *const dumper =
    "local POINT = ... "
    "local function key(k) local t = type(k) "
    "  if t == 'number' then return math.type(k) == 'integer' and 'i' .. k "
    "    or 'f' .. string.format('%a', k) "
    "  elseif t == 'string' then return 's' .. string.format('%q', k) "
    "  elseif t == 'boolean' then return tostring(k) "
    "  elseif t == 'nil' then return 'nil' "
    "  elseif t == 'function' then return 'fn' "
    "  elseif t == 'userdata' then return 'ud' end "
    "  return '?' .. t end "
    "return function(...) "
    "  local ids, n, out = {}, 0, {} "
    "  local function d(v) "
    "    if type(v) ~= 'table' then out[#out + 1] = key(v) return end "
    "    if ids[v] then out[#out + 1] = '#' .. ids[v] return end "
    "    n = n + 1 ids[v] = n "
    "    out[#out + 1] = (getmetatable(v) == POINT) and '{P' or '{' "
    "    local ks, names = {}, {} "
    "    for k in pairs(v) do ks[#ks + 1] = k names[k] = key(k) end "
    "    table.sort(ks, function(a, b) return names[a] < names[b] end) "
    "    for _, k in ipairs(ks) do out[#out + 1] = names[k] .. '=' d(v[k]) end "
    "    out[#out + 1] = '}' "
    "  end "
    "  for i = 1, select('#', ...) do d((select(i, ...))) end "
    "  return table.concat(out, ',') "
    "end";

static void setup(lua_State *L) {
  luaL_openlibs(L);
  lua_newtable(L); /* registry: Point <-> POINT */
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "POINT");
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "Point");
  lua_pushstring(L, "Point");
  lua_rawset(L, -3);
  lua_setfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG);
  if (luaL_loadstring(L, dumper) != LUA_OK)
    abort();
  lua_getglobal(L, "POINT");
  lua_call(L, 1, 1);
  lua_setglobal(L, "DUMP");
  crt_chan_stub_push(L, 1);
  lua_setglobal(L, "CHAN");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  A = luaL_newstate();
  B = luaL_newstate();
  setup(A);
  setup(B);
  for (int i = 0; fuzz_funcs[i]; i++) {
    if (luaL_loadbufferx(A, fuzz_funcs[i], strlen(fuzz_funcs[i]), FUZZ_CHUNKNAME, "t") ||
        lua_pcall(A, 0, 1, 0))
      abort();
    if (lua_type(A, -1) == LUA_TTABLE) {
      for (int k = 1; lua_rawgeti(A, -1, k) == LUA_TFUNCTION; k++) {
        fuzz_allow(A, -1);
        lua_pop(A, 1);
      }
      lua_pop(A, 1);
    } else {
      fuzz_allow(A, -1);
    }
    lua_pop(A, 1);
  }
  return 0;
}

typedef struct prog {
  const uint8_t *p, *end;
} prog;

static unsigned byte(prog *g) { return g->p < g->end ? *g->p++ : 0; }

static uint64_t u64(prog *g) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)byte(g) << (8 * i);
  return v;
}

#define MAXSTACK 48

/* Run the program on A; leaves the built values on A's stack. */
static void build(prog *g) {
  while (g->p < g->end) {
    int top = lua_gettop(A);
    /* C code may push only LUA_MINSTACK values without asking. */
    if (!lua_checkstack(A, 8))
      abort();
    unsigned op = byte(g) % 16;
    switch (op) {
    case 0: lua_pushinteger(A, (lua_Integer)(int8_t)byte(g)); break;
    case 1: lua_pushinteger(A, (lua_Integer)u64(g)); break;
    case 2: {
      uint64_t u = u64(g);
      double x;
      memcpy(&x, &u, 8);
      lua_pushnumber(A, x);
      break;
    }
    case 3: {
      size_t n = byte(g) % 24;
      char s[24];
      for (size_t i = 0; i < n; i++)
        s[i] = (char)byte(g);
      lua_pushlstring(A, s, n);
      break;
    }
    case 4: lua_createtable(A, (int)(byte(g) % 8), (int)(byte(g) % 8)); break;
    case 5: /* t[k] = v, t below k and v; bad keys are dropped */
      if (top >= 3 && lua_type(A, -3) == LUA_TTABLE) {
        int kt = lua_type(A, -2);
        int ok = kt == LUA_TSTRING || kt == LUA_TBOOLEAN ||
                 (kt == LUA_TNUMBER && lua_tonumber(A, -2) == lua_tonumber(A, -2));
        if (ok)
          lua_rawset(A, -3);
        else
          lua_pop(A, 2);
      }
      break;
    case 6: /* t[i] = v for a small i: arrays, in order or not */
      if (top >= 2 && lua_type(A, -2) == LUA_TTABLE)
        lua_rawseti(A, -2, (lua_Integer)(byte(g) % 40) - 2);
      break;
    case 7: /* append many items: lists long enough for the array part */
      if (top >= 1 && lua_type(A, -1) == LUA_TTABLE) {
        unsigned n = byte(g);
        lua_Integer base = (lua_Integer)lua_rawlen(A, -1);
        for (unsigned i = 1; i <= n; i++) {
          lua_pushinteger(A, (lua_Integer)i);
          lua_rawseti(A, -2, base + (lua_Integer)i);
        }
      }
      break;
    case 8: /* a copy of a value further down: shared references, cycles */
      if (top >= 1)
        lua_pushvalue(A, -(int)(1 + byte(g) % (unsigned)top));
      break;
    case 9: lua_pushboolean(A, byte(g) & 1); break;
    case 10: lua_pushnil(A); break;
    case 11: { /* one of the known functions */
      unsigned k = byte(g) % 5;
      luaL_loadbufferx(A, fuzz_funcs[k], strlen(fuzz_funcs[k]), FUZZ_CHUNKNAME, "t");
      lua_call(A, 0, 1);
      break;
    }
    case 12:
      if (top >= 1 && lua_type(A, -1) == LUA_TTABLE) {
        lua_getglobal(A, "POINT");
        lua_setmetatable(A, -2);
      }
      break;
    case 13: /* t[key] = t */
      if (top >= 1 && lua_type(A, -1) == LUA_TTABLE) {
        lua_pushinteger(A, (lua_Integer)byte(g) - 100);
        lua_pushvalue(A, -2);
        lua_rawset(A, -3);
      }
      break;
    case 14: /* punch a hole */
      if (top >= 1 && lua_type(A, -1) == LUA_TTABLE) {
        lua_pushnil(A);
        lua_rawseti(A, -2, (lua_Integer)(byte(g) % 40));
      }
      break;
    case 15: lua_getglobal(A, "CHAN"); break;
    }
    if (lua_gettop(A) > MAXSTACK)
      lua_settop(A, MAXSTACK);
  }
}

static char *dump(lua_State *L, int first, int n) {
  if (!lua_checkstack(L, n + 4))
    abort();
  lua_getglobal(L, "DUMP");
  for (int i = 0; i < n; i++)
    lua_pushvalue(L, first + i);
  if (lua_pcall(L, n, 1, 0) != LUA_OK) {
    fprintf(stderr, "dump failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  char *s = strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prog g = {data, data + size};
  lua_settop(A, 0);
  lua_settop(B, 0);
  build(&g);
  int n = lua_gettop(A);
  crt_buf b;
  crt_buf_init(&b);
  if (crt_codec_encode(A, 1, n, &b, 0, "fuzz", 0) != 0) {
    const char *e = lua_tostring(A, -1);
    if (!strstr(e, "too deep")) {
      fprintf(stderr, "encode failed: %s\n", e);
      abort();
    }
    crt_buf_free(&b);
    return 0;
  }
  int m = crt_codec_decode(B, b.data, b.len, CRT_CODEC_FUNCTIONS);
  if (m != n) {
    fprintf(stderr, "decode failed: %s\n", m < 0 ? lua_tostring(B, -1) : "count");
    abort();
  }
  char *da = dump(A, 1, n), *db = dump(B, 1, n);
  if (strcmp(da, db) != 0) {
    fprintf(stderr, "round trip differs:\n  sent %s\n  got  %s\n", da, db);
    abort();
  }
  free(da);
  free(db);
  crt_buf_free(&b);
  return 0;
}
