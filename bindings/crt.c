/*
 * crt.c - assembles the crt table of a state that owns a runtime: the C
 * functions of every area, then the Lua-side parts (bindings/prelude.lua,
 * compiled into the library) that build crt.all, crt.race, crt.timeout and
 * crt.group on top of them.
 *
 * Loop thread only.
 */
#include <lauxlib.h>

#include "channel.h"
#include "codec.h"
#include "io.h"
#include "rt.h"
#include "scheduler.h"
#include "process.h"
#include "thread.h"

const char *crt_lua_source(const char *name, size_t *len); /* generated */

static void set_info(lua_State *L) {
  lua_pushliteral(L, CRT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua_version");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
}

/* Push the crt table for rt's state (L is rt's main state). */
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

int crt_rt_open_module(lua_State *L); /* runtime/rt.c */

/* require "crt": the runtime's table, attaching a runtime to this state
 * first when it has none (module mode). */
CRT_API int luaopen_crt(lua_State *L) { return crt_rt_open_module(L); }
