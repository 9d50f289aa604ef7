/*
 * crt.c - the Lua face of a runtime: assembles the crt table of a state (the
 * C functions of every area, then the Lua-side parts, bindings/prelude.lua,
 * compiled into the library, that build crt.all, crt.race, crt.timeout and
 * crt.group on top of them), and the two ways to get one: crt_open (a fresh
 * state, for the crt executable and embedding hosts) and luaopen_crt
 * (require "crt" from a stock lua5.4: module mode, where a sentinel userdata
 * in the registry closes the runtime when the state closes). Both stand on
 * the engine's crt_rt_new (runtime/rt.c).
 *
 * Loop thread only.
 */
#include <lauxlib.h>
#include <lualib.h>

#include "alloc.h"
#include "channel.h"
#include "codec.h"
#include "io.h"
#include "lib.h"
#include "rt.h"
#include "scheduler.h"
#include "process.h"
#include "thread.h"

const char *crt_lua_source(const char *name, size_t *len); /* generated */

/* crt.pid(): the process id of the calling state's process (the same in
 * every thread worker; a child process has its own). */
int crt_l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

static void set_info(lua_State *L) {
  lua_pushcfunction(L, crt_l_pid);
  lua_setfield(L, -2, "pid");
  lua_pushliteral(L, CRT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua_version");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
}

int crt_open_lib(lua_State *L, crt_runtime *rt) {
  lua_createtable(L, 0, 40);
  set_info(L);
  lua_pushlightuserdata(L, rt);
  crt_open_task(L);
  crt_open_channel(L);
  crt_open_codec(L);
  lua_setfield(L, -2, "codec");
  crt_open_fs(L, rt);
  crt_open_net(L, rt);
  crt_open_signal(L, rt);
  crt_open_exec(L, rt);
  crt_open_thread(L, rt);
  crt_open_process(L, rt);

  size_t len;
  const char *src = crt_lua_source("prelude", &len);
  if (src == NULL || luaL_loadbuffer(L, src, len, "=[crt prelude]") != LUA_OK)
    return lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);

  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "crt.lib");
  return 1;
}

/* ---- crt_open: a fresh state ---------------------------------------------- */

/* Everything that allocates in the new state runs here, under lua_pcall: a
 * memory error makes crt_open return NULL instead of aborting the host. */
static int open_state(lua_State *L) {
  const crt_config *config = lua_touserdata(L, 1);
  lua_settop(L, 0);
  luaL_openlibs(L);
  crt_runtime *rt = crt_rt_new(L, config, 1);
  if (!rt)
    return luaL_error(L, "crt: cannot open the runtime");
  crt_open_lib(L, rt);
  /* The crt table is at the top: make it require "crt" and, for scripts, the
   * global crt. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "crt");
  lua_pop(L, 1);
  if (crt_rt_config(rt)->set_global)
    lua_setglobal(L, "crt");
  else
    lua_pop(L, 1);
  return 0;
}

crt_runtime *crt_open(const crt_config *config) {
  lua_State *L =
      crt_arena_newstate(config ? config->alloc : NULL, config ? config->alloc_ud : NULL);
  if (!L)
    return NULL;
  lua_pushcfunction(L, open_state);
  lua_pushlightuserdata(L, (void *)config);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    crt_runtime *rt = crt_rt_get(L);
    if (rt)
      crt_close(rt); /* closes L too */
    else
      crt_arena_close_state(L);
    return NULL;
  }
  return crt_rt_get(L);
}

/* ---- module mode ---------------------------------------------------------- */

static int sentinel_gc(lua_State *L) {
  crt_runtime **box = lua_touserdata(L, 1);
  if (*box) {
    crt_runtime *rt = *box;
    *box = NULL;
    crt_close(rt); /* the state is the host's: only the runtime goes */
  }
  return 0;
}

/* require "crt": the runtime's table, attaching a runtime to this state
 * first when it has none (module mode). */
CRT_API int luaopen_crt(lua_State *L) {
  crt_runtime *rt = crt_rt_get(L);
  if (rt) {
    lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
    return 1;
  }
  crt_runtime **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "crt.sentinel");
  rt = crt_rt_new(L, NULL, 0);
  if (!rt)
    return luaL_error(L, "crt: cannot open the runtime");
  lua_getfield(L, LUA_REGISTRYINDEX, "crt.sentinel");
  *(crt_runtime **)lua_touserdata(L, -1) = rt;
  lua_pop(L, 1);
  crt_open_lib(L, rt);
  return 1;
}
