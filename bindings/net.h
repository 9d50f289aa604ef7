/*
 * net.h - what the files of crt.net share (private to bindings/net*.c):
 * argument checks, resolved address lists and the Lua functions each file
 * contributes to the crt.net table (net.c registers them).
 *
 *   net.c      the crt.net table, arguments, "host:port: message" failures
 *   net_dns.c  name resolution (crt.net.resolve, and for every other call)
 *   net_tcp.c  crt.net.connect, listen and serve, the server class
 *   net_udp.c  crt.net.udp, the UDP socket class
 *
 * Loop thread only. Every function of the crt.net table has the runtime and
 * the I/O context as upvalues 1 and 2 (crt_io_newlib).
 */
#ifndef CRT_NET_H
#define CRT_NET_H

#include <lua.h>
#include <uv.h>

#include "io.h"
#include "scheduler.h"

#define CRT_NET_MAX_ADDRS 16
#define CRT_NET_DEFAULT_HOST "127.0.0.1"

/* Resolved addresses, kept as a userdata on the waiting task's stack. */
typedef struct crt_net_addrs {
  int err;
  int n;
  void *op; /* the request in flight (connect) */
  struct sockaddr_storage a[CRT_NET_MAX_ADDRS];
} crt_net_addrs;

/* The I/O context of a crt.net function (its upvalue 2). */
static inline crt_io *crt_net_io(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(2)); }

/* ---- arguments (net.c) ---- */

/* An integer port at arg: 1-65535, or 0-65535 with allow_zero. */
int crt_net_check_port(lua_State *L, int arg, const char *fname, int allow_zero);
/* Options of listen, serve and udp: the table at arg (or nil for all the
 * defaults). check_opts raises unless it is a table or nil; opt_host and
 * opt_int read one field, checked. */
void crt_net_check_opts(lua_State *L, int arg, const char *fname);
const char *crt_net_opt_host(lua_State *L, int arg, const char *fname, const char *dflt);
lua_Integer crt_net_opt_int(lua_State *L, int arg, const char *fname, const char *field,
                            lua_Integer dflt, lua_Integer lo, lua_Integer hi);
/* Push nil, "<host>:<port>: message", code; returns 3. */
int crt_net_fail_at(lua_State *L, int err, const char *host, int port);

/* ---- resolution (net_dns.c) ---- */

/* Push a crt_net_addrs for host:port, then continue in k (directly for a
 * numeric address, after resolution otherwise; al->err tells a failure). */
int crt_net_resolve_then(lua_State *L, crt_task *t, const char *host, int port, int socktype,
                         lua_KFunction k, lua_KContext ctx);

/* ---- the functions of crt.net ---- */

int crt_net_resolve(lua_State *L); /* net_dns.c */
int crt_net_connect(lua_State *L); /* net_tcp.c */
int crt_net_listen(lua_State *L);
int crt_net_serve(lua_State *L);
int crt_net_udp(lua_State *L); /* net_udp.c */

/* Create the classes (and the serve wrapper) in L (idempotent). */
void crt_net_open_tcp(lua_State *L);
void crt_net_open_udp(lua_State *L);

#endif
