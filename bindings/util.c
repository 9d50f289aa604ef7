/*
 * util.c - the helpers every binding shares (see util.h): errors that name
 * the function, checked boxes, class registration and crt.Cancelled.
 *
 * Any thread: each call touches only the Lua state it is given.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "scheduler.h"
#include "util.h"

int crt_errorf(lua_State *L, const char *fname, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  luaL_where(L, 1);
  lua_pushstring(L, fname);
  lua_pushliteral(L, ": ");
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 4);
  lua_error(L);
  abort(); /* not reached: lua_error does not return */
}

/* Like luaL_argerror: callers give stack indices; in a method call (o:m(x))
 * self is not counted, and a bad self is named as such. */
static int method_call(lua_State *L, int *arg) {
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat &&
      strcmp(ar.namewhat, "method") == 0) {
    (*arg)--;
    return *arg == 0;
  }
  return 0;
}

int crt_argerror(lua_State *L, const char *fname, int arg, const char *msg) {
  if (method_call(L, &arg))
    crt_errorf(L, fname, "bad self (%s)", msg);
  crt_errorf(L, fname, "bad argument #%d (%s)", arg, msg);
}

int crt_typeerror(lua_State *L, const char *fname, int arg, const char *tname) {
  const char *got = lua_type(L, arg) == LUA_TNONE ? "no value" : luaL_typename(L, arg);
  if (method_call(L, &arg))
    crt_errorf(L, fname, "bad self (%s expected, got %s)", tname, got);
  crt_errorf(L, fname, "bad argument #%d (%s expected, got %s)", arg, tname, got);
}

int crt_pushfail(lua_State *L, int uverr, const char *what) {
  lua_pushnil(L);
  if (what)
    lua_pushfstring(L, "%s: %s", what, uv_strerror(uverr));
  else
    lua_pushstring(L, uv_strerror(uverr));
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

void *crt_checkbox(lua_State *L, int idx, const char *mt, const char *tname, const char *fname) {
  void *p = luaL_testudata(L, idx, mt);
  if (!p)
    crt_typeerror(L, fname, idx, tname);
  return p;
}

void *crt_checkptr(lua_State *L, int idx, const char *mt, const char *tname, const char *fname) {
  return *(void **)crt_checkbox(L, idx, mt, tname, fname);
}

int crt_newclass(lua_State *L, const char *mt, const luaL_Reg *methods, const luaL_Reg *meta,
                 int nup) {
  int created = luaL_newmetatable(L, mt);
  if (created) {
    int upv = lua_gettop(L) - nup; /* first upvalue, below the metatable */
    if (methods) {
      lua_newtable(L);
      for (int i = 0; i < nup; i++)
        lua_pushvalue(L, upv + i);
      luaL_setfuncs(L, methods, nup);
      lua_setfield(L, -2, "__index");
    }
    if (meta) {
      for (int i = 0; i < nup; i++)
        lua_pushvalue(L, upv + i);
      luaL_setfuncs(L, meta, nup);
    }
  }
  lua_pop(L, 1 + nup);
  return created;
}

crt_task *crt_task_require(lua_State *L, const char *fname) {
  crt_task *t = crt_task_current(L);
  if (!t)
    crt_errorf(L, fname,
               "must be called from a task (not from the main state or a plain "
               "coroutine; in module mode wrap the code in crt.run)");
  return t;
}

static int cancelled_tostring(lua_State *L) {
  lua_pushliteral(L, "crt.Cancelled");
  return 1;
}

void crt_new_cancelled(lua_State *L) {
  lua_newuserdatauv(L, 0, 0);
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, cancelled_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "crt.Cancelled");
  lua_setfield(L, -2, "__name");
  lua_setmetatable(L, -2);
}
