/*
 * fncache.c - the function cache of the thread engine (see fncache.h): the
 * bytecode of a Lua function, dumped once per identity (weak table fn ->
 * entry) and shared by identical bytecode (weak table bytecode -> entry), and
 * what its upvalue names say once for all. Upvalues themselves are not
 * cached: they are copied with every job, so a job always sees the values of
 * the moment it was submitted.
 *
 * Loop thread only (the main state). An entry is a userdata of the main
 * state holding one reference to its crt_fnblob; its finalizer (the only
 * function of its private metatable) drops it when the function and its
 * bytecode are both collected. Workers keep the blobs they loaded by id.
 */
#include "fncache.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "buf.h"

static const char entry_mt_key = 'M'; /* registry key of the entries' metatable */

static const char fnc_key = 'f';
static const char bcc_key = 'b';

/* `simple` when every upvalue is _ENV (nothing to send but the arguments). */
typedef struct crt_fnentry {
  crt_fnblob *b;
  int nups;
  int simple;
} crt_fnentry;

static int entry_gc(lua_State *L) {
  crt_fnentry *e = lua_touserdata(L, 1);
  crt_fnblob_release(e->b);
  e->b = NULL;
  return 0;
}

static void weak_table(lua_State *L, const void *key, const char *mode) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void crt_fncache_init(lua_State *L, crt_fncache *c) {
  c->last_fn = NULL;
  c->last = NULL;
  c->last_ref = LUA_NOREF;
  weak_table(L, &fnc_key, "k");
  weak_table(L, &bcc_key, "v");
  /* The entries' finalizer (frees their bytecode blob): a private
   * metatable kept under a registry key, not a Lua class. */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &entry_mt_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, entry_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &entry_mt_key);
  }
  lua_pop(L, 1);
}

void crt_fncache_clear(lua_State *L, crt_fncache *c) {
  luaL_unref(L, LUA_REGISTRYINDEX, c->last_ref);
  c->last_ref = LUA_NOREF;
  c->last_fn = NULL;
  c->last = NULL;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return crt_buf_append(ud, p, n) != 0;
}

/* Find or make the entry of the Lua function at f. NULL with *err set. */
static crt_fnentry *lookup(lua_State *L, int f, const char **err) {
  int top = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &fnc_key);
  lua_pushvalue(L, f);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    crt_fnentry *e = lua_touserdata(L, -1);
    lua_settop(L, top);
    return e;
  }
  lua_pop(L, 1);
  crt_buf code;
  crt_buf_init(&code);
  lua_pushvalue(L, f);
  /* With debug information: errors in the worker name lines and locals. */
  int rc = lua_dump(L, dump_writer, &code, 0);
  lua_pop(L, 1);
  if (rc != 0 || code.len == 0) {
    crt_buf_free(&code);
    lua_settop(L, top);
    *err = "crt.thread: cannot dump the function";
    return NULL;
  }
  lua_pushlstring(L, code.data, code.len); /* stack: fnc, code */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &bcc_key);
  lua_pushvalue(L, -2);
  if (lua_rawget(L, -2) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    crt_fnentry *e = lua_newuserdatauv(L, sizeof *e, 0);
    e->b = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &entry_mt_key);
    lua_setmetatable(L, -2);
    e->b = crt_fnblob_new(code.data, code.len);
    if (!e->b) {
      crt_buf_free(&code);
      lua_settop(L, top);
      *err = "crt.thread: not enough memory";
      return NULL;
    }
    lua_Debug ar;
    lua_pushvalue(L, f);
    lua_getinfo(L, ">u", &ar);
    e->nups = ar.nups;
    e->simple = 1;
    for (int i = 1; i <= ar.nups; i++) {
      const char *name = lua_getupvalue(L, f, i);
      lua_pop(L, 1);
      if (!name || strcmp(name, "_ENV") != 0)
        e->simple = 0;
    }
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4); /* bcc[code] = entry */
  }
  crt_buf_free(&code);
  crt_fnentry *e = lua_touserdata(L, -1);
  lua_pushvalue(L, f);
  lua_pushvalue(L, -2);
  lua_rawset(L, top + 1); /* fnc[fn] = entry */
  lua_settop(L, top);
  return e;
}

static crt_fnentry *entry_of(lua_State *L, crt_fncache *c, int f, const char **err) {
  const void *p = lua_topointer(L, f);
  if (p == c->last_fn)
    return c->last;
  crt_fnentry *e = lookup(L, f, err);
  if (!e)
    return NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, c->last_ref);
  lua_pushvalue(L, f);
  c->last_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->last_fn = p;
  c->last = e;
  return e;
}

int crt_fncache_prepare(lua_State *L, crt_fncache *c, int f, crt_fnprep *fp, const char **err) {
  f = lua_absindex(L, f);
  fp->fn = NULL;
  fp->nups = fp->nvals = 0;
  if (lua_iscfunction(L, f)) {
    lua_pushvalue(L, f);
    fp->nvals = 1;
    return 0;
  }
  crt_fnentry *e = entry_of(L, c, f, err);
  if (!e)
    return -1;
  fp->fn = e->b;
  fp->nups = e->nups;
  if (e->simple) {
    memset(fp->kinds, CRT_UPV_ENV, (size_t)e->nups);
    return 0;
  }
  int nups = e->nups;
  if (!lua_checkstack(L, nups + 4)) {
    *err = "stack overflow (crt.thread: too many upvalues)";
    return -1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  int g = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib"); /* the crt table */
  for (int i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, f, i);
    if ((name && strcmp(name, "_ENV") == 0) || lua_rawequal(L, -1, g)) {
      fp->kinds[i - 1] = CRT_UPV_ENV;
      lua_pop(L, 1);
    } else if (lua_rawequal(L, -1, g + 1)) {
      /* `local crt = require "crt"`: the worker's own crt table. */
      fp->kinds[i - 1] = CRT_UPV_CRT;
      lua_pop(L, 1);
    } else if (lua_rawequal(L, -1, f)) {
      fp->kinds[i - 1] = CRT_UPV_SELF;
      lua_pop(L, 1);
    } else {
      fp->kinds[i - 1] = CRT_UPV_VALUE;
      fp->nvals++;
    }
  }
  lua_remove(L, g + 1);
  lua_remove(L, g);
  return 0;
}

int crt_fncache_set_job(crt_job *j, const crt_fnprep *fp) {
  if (!fp->fn)
    return 0;
  j->fn = fp->fn;
  crt_fnblob_retain(fp->fn);
  j->nups = fp->nups;
  j->nvals = fp->nvals;
  if (fp->nups) {
    j->kinds = malloc((size_t)fp->nups);
    if (!j->kinds)
      return -1;
    memcpy(j->kinds, fp->kinds, (size_t)fp->nups);
  }
  return 0;
}
