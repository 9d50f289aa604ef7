/*
 * net.c - crt.net: the table of its functions and what they share to check
 * their arguments and report failures. The functions themselves live in
 * net_dns.c (resolve), net_tcp.c (connect, listen, serve) and net_udp.c
 * (udp); see net.h. The TCP streams are stream.c's.
 *
 * Loop thread only. Each waiting call follows the scheduler's protocol (see
 * scheduler.h): the request keeps the task until its callback wakes it, or
 * until the unpark hook detaches it (cancellation), after which the request
 * frees itself when libuv is done with it. A call keeps the Lua objects it
 * will return (the box of a stream, the list of resolved addresses) on the
 * task's own stack, so a callback never allocates Lua memory: continuations
 * running in the task do.
 *
 * Handles (servers, UDP sockets) are ref'd only while a task waits on them,
 * except serve() servers, which start tasks by themselves (wakers, io.h).
 * None keeps crt alive: crt ends when no task is left.
 */
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "net.h"
#include "stream.h"
#include "util.h"

/* ---- arguments ------------------------------------------------------------ */

int crt_net_check_port(lua_State *L, int arg, const char *fname, int allow_zero) {
  int isint = 0;
  lua_Integer p = lua_type(L, arg) == LUA_TNUMBER ? lua_tointegerx(L, arg, &isint) : 0;
  if (!isint)
    return crt_typeerror(L, fname, arg, "integer");
  if (p < (allow_zero ? 0 : 1) || p > 65535)
    return crt_argerror(L, fname, arg,
                        allow_zero ? "port out of range (0-65535)" : "port out of range (1-65535)");
  return (int)p;
}

/* Options of listen, serve and udp: host and port from the table at arg
 * (or nil for all the defaults). */
const char *crt_net_opt_host(lua_State *L, int arg, const char *fname, const char *dflt) {
  if (lua_isnoneornil(L, arg))
    return dflt;
  lua_getfield(L, arg, "host");
  const char *h = NULL;
  if (lua_isnil(L, -1)) {
    h = dflt;
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    h = lua_tolstring(L, -1, &len);
    if (strlen(h) != len || len == 0)
      crt_argerror(L, fname, arg, "field 'host' is empty or contains a NUL byte");
  } else {
    lua_pushfstring(L, "field 'host': string expected, got %s", luaL_typename(L, -1));
    crt_argerror(L, fname, arg, lua_tostring(L, -1));
  }
  lua_pop(L, 1); /* the string stays alive in the options table */
  return h;
}

lua_Integer crt_net_opt_int(lua_State *L, int arg, const char *fname, const char *field,
                            lua_Integer dflt, lua_Integer lo, lua_Integer hi) {
  if (lua_isnoneornil(L, arg))
    return dflt;
  lua_getfield(L, arg, field);
  lua_Integer v = dflt;
  if (!lua_isnil(L, -1)) {
    int isint = 0;
    if (lua_type(L, -1) == LUA_TNUMBER)
      v = lua_tointegerx(L, -1, &isint);
    if (!isint) {
      lua_pushfstring(L, "field '%s': integer expected, got %s", field, luaL_typename(L, -1));
      crt_argerror(L, fname, arg, lua_tostring(L, -1));
    }
    if (v < lo || v > hi) {
      lua_pushfstring(L, "field '%s' out of range (%I-%I)", field, lo, hi);
      crt_argerror(L, fname, arg, lua_tostring(L, -1));
    }
  }
  lua_pop(L, 1);
  return v;
}

void crt_net_check_opts(lua_State *L, int arg, const char *fname) {
  if (!lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TTABLE)
    crt_typeerror(L, fname, arg, "table");
}

/* ---- failures -------------------------------------------------------------- */

/* nil, "<host>:<port>: message", code */
int crt_net_fail_at(lua_State *L, int err, const char *host, int port) {
  if (strchr(host, ':') && host[0] != '[')
    lua_pushfstring(L, "[%s]:%d", host, port);
  else
    lua_pushfstring(L, "%s:%d", host, port);
  crt_pushfail(L, err, lua_tostring(L, -1));
  lua_remove(L, -4);
  return 3;
}

/* ---- registration ---------------------------------------------------------- */

void crt_open_net(lua_State *L, crt_runtime *rt) {
  crt_io *io = crt_io_get(L, rt);
  crt_io_ignore_sigpipe();
  crt_stream_open(L);
  crt_net_open_tcp(L);
  crt_net_open_udp(L);
  static const luaL_Reg funcs[] = {{"connect", crt_net_connect}, {"listen", crt_net_listen},
                                   {"serve", crt_net_serve},     {"udp", crt_net_udp},
                                   {"resolve", crt_net_resolve}, {NULL, NULL}};
  crt_io_newlib(L, "net", funcs, rt, io);
}
