/*
 * bindings/codec.c - crt.codec: encode, decode and register, the Lua face of
 * runtime/codec.c.
 *
 * Opened in every Lua state (the main state, thread workers, child
 * processes); each state's functions touch only that state, so any thread
 * may run them on the state it owns.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

#include "buf.h"
#include "codec.h"
#include "lib.h"
#include "util.h"

/* Output buffers bigger than this are freed after use rather than kept. */
#define KEEPMAX ((size_t)64 * 1024)

/* The buffer reused by crt.codec.encode, an upvalue of it. `busy` guards
 * against a re-entrant call (a __gc finalizer calling encode while encode
 * allocates); such a call gets a fresh box instead. */
typedef struct box {
  crt_buf b;
  int busy;
} box;

static int box_gc(lua_State *L) {
  box *x = lua_touserdata(L, 1);
  crt_buf_free(&x->b);
  return 0;
}

#define BOX_MT "crt.codec.buffer"

static box *newbox(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", box_gc}, {NULL, NULL}};
  box *x = lua_newuserdatauv(L, sizeof *x, 0);
  crt_buf_init(&x->b);
  x->busy = 0;
  crt_newclass(L, BOX_MT, NULL, meta, 0);
  luaL_setmetatable(L, BOX_MT);
  return x;
}

static int l_encode(lua_State *L) {
  if (lua_gettop(L) < 1)
    return crt_argerror(L, "crt.codec.encode", 1, "value expected");
  lua_settop(L, 1);
  box *x = lua_touserdata(L, lua_upvalueindex(1));
  if (x->busy)
    x = newbox(L); /* collected with the rest; nothing to free by hand */
  x->busy = 1;
  x->b.len = 0;
  if (crt_codec_encode(L, 1, 1, &x->b, 0, "crt.codec.encode: cannot encode", 0) != 0) {
    x->busy = 0;
    return lua_error(L);
  }
  /* The string names channels by id and does not keep them alive: release
   * them now, so nothing is held if pushing the string raises. */
  crt_buf_rewind(&x->b, x->b.len, 0);
  x->busy = 0;
  lua_pushlstring(L, x->b.data, x->b.len);
  if (x->b.cap > KEEPMAX)
    crt_buf_free(&x->b);
  return 1;
}

static int l_decode(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return crt_typeerror(L, "crt.codec.decode", 1, "string");
  int flags = 0;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TTABLE)
      return crt_typeerror(L, "crt.codec.decode", 2, "table");
    lua_getfield(L, 2, "functions");
    if (lua_toboolean(L, -1))
      flags |= CRT_CODEC_FUNCTIONS;
  }
  lua_settop(L, 1);
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  int n = crt_codec_decode(L, s, len, flags);
  if (n < 0)
    return crt_errorf(L, "crt.codec.decode", "%s", lua_tostring(L, -1));
  return n;
}

/* crt.codec.register(name, mt) -> mt: tables with metatable mt are encoded
 * with the name, and decoded with the metatable registered under the same
 * name in the receiving state. Registering again replaces the old pairing,
 * in both directions. */
static int l_register(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return crt_typeerror(L, "crt.codec.register", 1, "string");
  if (lua_type(L, 2) != LUA_TTABLE)
    return crt_typeerror(L, "crt.codec.register", 2, "table");
  lua_settop(L, 2);
  if (lua_getfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG);
  }
  /* Forget the metatable that had this name and the name this metatable had. */
  for (int i = 1; i <= 2; i++) {
    lua_pushvalue(L, i);
    if (lua_rawget(L, 3) != LUA_TNIL) {
      lua_pushnil(L);
      lua_rawset(L, 3);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_rawset(L, 3);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 1);
  lua_rawset(L, 3);
  lua_settop(L, 2);
  return 1;
}

int crt_open_codec(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"encode", l_encode}, {"decode", l_decode}, {"register", l_register}, {NULL, NULL}};
  lua_createtable(L, 0, 3);
  newbox(L); /* the upvalue of encode (the others ignore it) */
  luaL_setfuncs(L, funcs, 1);
  return 1;
}
