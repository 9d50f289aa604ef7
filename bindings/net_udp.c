/*
 * net_udp.c - UDP for crt.net: crt.net.udp and the socket class (send,
 * recv, close, host and port).
 *
 * Loop thread only. A socket is a malloc'd struct around a uv_udp_t, freed
 * by the handle's close callback; its Lua box only points at it. The handle
 * is ref'd only while a task waits on it (a receive or a queued send).
 * Datagrams arrive in the I/O context's slab and are copied out at once.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "net.h"
#include "rt.h"
#include "scheduler.h"
#include "util.h"

#define UDP_MT "crt.udp"

/* ---- UDP --------------------------------------------------------------------- */

typedef struct udpsock {
  crt_handle_close_fn close_fn; /* must stay first */
  uv_udp_t udp;
  crt_io *io;
  struct udpsock **box;
  crt_task *receiver;
  int nwait;
  int closed;
  int receiving;
  /* The datagram handed to the receiver. */
  char *data;
  size_t len;
  int rerr;
  struct sockaddr_storage from;
} udpsock;

typedef struct usend {
  uv_udp_send_t req;
  udpsock *u;
  crt_task *t;
  int status;
  char data[];
} usend;

static void udp_hold(udpsock *u) {
  if (u->nwait++ == 0 && !uv_is_closing((uv_handle_t *)&u->udp))
    uv_ref((uv_handle_t *)&u->udp);
}

static void udp_release(udpsock *u) {
  if (--u->nwait == 0 && !uv_is_closing((uv_handle_t *)&u->udp))
    uv_unref((uv_handle_t *)&u->udp);
}

static void udp_close_cb(uv_handle_t *h) {
  udpsock *u = h->data;
  if (u->box)
    *u->box = NULL;
  free(u->data);
  free(u);
}

static void udp_stop(udpsock *u) {
  if (u->receiving) {
    uv_udp_recv_stop(&u->udp);
    u->receiving = 0;
  }
}

/* The receiver is woken or went away: stop receiving. Returns it. */
static crt_task *recv_detach(udpsock *u) {
  crt_task *t = u->receiver;
  u->receiver = NULL;
  udp_stop(u);
  udp_release(u);
  return t;
}

static void udp_close(udpsock *u) {
  u->closed = 1;
  udp_stop(u);
  if (u->receiver)
    crt_task_wake(recv_detach(u), 0);
  if (!uv_is_closing((uv_handle_t *)&u->udp))
    uv_close((uv_handle_t *)&u->udp, udp_close_cb);
}

static void udp_close_fn(uv_handle_t *h) { udp_close(h->data); }

static udpsock *check_udp(lua_State *L, const char *fname) {
  udpsock *u = crt_checkptr(L, 1, UDP_MT, "udp socket", fname);
  if (!u || u->closed)
    crt_errorf(L, fname, "the socket is closed");
  return u;
}

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  udpsock *u = h->data;
  (void)suggested;
  buf->base = u->io->slab;
  buf->len = CRT_IO_SLAB;
}

static void udp_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *addr, unsigned flags) {
  udpsock *u = h->data;
  (void)flags;
  if (nread == 0 && addr == NULL)
    return; /* nothing more to read now */
  if (!u->receiver)
    return;
  if (nread < 0) {
    u->rerr = (int)nread;
  } else {
    free(u->data);
    u->data = malloc(nread > 0 ? (size_t)nread : 1);
    if (!u->data) {
      u->rerr = UV_ENOMEM;
    } else {
      memcpy(u->data, buf->base, (size_t)nread);
      u->len = (size_t)nread;
      memset(&u->from, 0, sizeof u->from);
      memcpy(&u->from, addr,
             addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in));
    }
  }
  crt_task_wake(recv_detach(u), 0);
}

static void recv_unpark(crt_task *t, void *data) {
  (void)t;
  recv_detach(data);
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  udpsock *u = *(udpsock **)lua_touserdata(L, 1);
  if (!u || u->closed) {
    lua_pushnil(L);
    return 1;
  }
  if (u->rerr) {
    int e = u->rerr;
    u->rerr = 0;
    return crt_pushfail(L, e, "socket:recv");
  }
  char host[INET6_ADDRSTRLEN];
  int port;
  crt_io_addr_parts((struct sockaddr *)&u->from, host, sizeof host, &port);
  char *data = u->data;
  u->data = NULL;
  crt_io_pushbuf(L, data, u->len);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 3;
}

static int u_recv(lua_State *L) {
  static const char fname[] = "socket:recv";
  udpsock *u = check_udp(L, fname);
  crt_task *t = crt_task_require(L, fname);
  if (u->receiver)
    return crt_errorf(L, fname, "another task is already receiving on this socket");
  lua_settop(L, 1);
  int r = uv_udp_recv_start(&u->udp, udp_alloc, udp_recv_cb);
  if (r < 0)
    return crt_pushfail(L, r, fname);
  u->receiving = 1;
  u->receiver = t;
  udp_hold(u);
  return crt_task_park(L, t, recv_unpark, u, recv_k, 0);
}

static void send_cb(uv_udp_send_t *req, int status) {
  usend *s = req->data;
  udp_release(s->u);
  if (s->t) {
    lua_pushinteger(crt_task_co(s->t), status);
    crt_task_wake(s->t, 1);
  }
  free(s);
}

static void send_unpark(crt_task *t, void *data) {
  usend *s = data;
  (void)t;
  s->t = NULL; /* the datagram still goes out; send_cb frees s */
}

static int send_done_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  int st = (int)lua_tointeger(L, -1);
  if (st < 0)
    return crt_pushfail(L, st, "socket:send");
  lua_pushboolean(L, 1);
  return 1;
}

/* Stack: 1 socket, 2 data, 3 host, 4 port, 5 crt_net_addrs. */
static int send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  static const char fname[] = "socket:send";
  udpsock *u = *(udpsock **)lua_touserdata(L, 1);
  crt_net_addrs *al = lua_touserdata(L, 5);
  if (al->err)
    return crt_net_fail_at(L, al->err, lua_tostring(L, 3), (int)lua_tointeger(L, 4));
  if (!u || u->closed)
    return crt_errorf(L, fname, "the socket is closed");
  /* Prefer an address of the family the socket is bound to. */
  struct sockaddr_storage self;
  int slen = sizeof self;
  const struct sockaddr *dest = (struct sockaddr *)&al->a[0];
  if (uv_udp_getsockname(&u->udp, (struct sockaddr *)&self, &slen) == 0)
    for (int i = 0; i < al->n; i++)
      if (al->a[i].ss_family == self.ss_family) {
        dest = (struct sockaddr *)&al->a[i];
        break;
      }
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  int r = uv_udp_try_send(&u->udp, &b, 1, dest);
  if (r >= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != UV_EAGAIN)
    return crt_pushfail(L, r, fname);
  usend *s = malloc(sizeof *s + len);
  if (!s)
    return crt_pushfail(L, UV_ENOMEM, fname);
  memcpy(s->data, p, len);
  s->u = u;
  s->t = crt_task_current(L);
  s->req.data = s;
  b = uv_buf_init(s->data, (unsigned)len);
  r = uv_udp_send(&s->req, &u->udp, &b, 1, dest, send_cb);
  if (r < 0) {
    free(s);
    return crt_pushfail(L, r, fname);
  }
  udp_hold(u);
  return crt_task_park(L, s->t, send_unpark, s, send_done_k, 0);
}

static int u_send(lua_State *L) {
  static const char fname[] = "socket:send";
  check_udp(L, fname);
  if (lua_type(L, 2) != LUA_TSTRING)
    return crt_typeerror(L, fname, 2, "string");
  const char *host = crt_io_checkname(L, 3, fname, NULL);
  int port = crt_net_check_port(L, 4, fname, 0);
  crt_task *t = crt_task_require(L, fname);
  size_t len;
  lua_tolstring(L, 2, &len);
  if (len > 65535)
    return crt_argerror(L, fname, 2, "datagram too large (at most 65535 bytes)");
  lua_settop(L, 4);
  return crt_net_resolve_then(L, t, host, port, SOCK_DGRAM, send_k, 0);
}

/* udp_close is harmless on a closed socket. */
static void close_obj(void *u) { udp_close(u); }

static int u_close(lua_State *L) {
  return crt_io_close_method(L, UDP_MT, "udp socket", "socket:close", close_obj);
}

static int u_gc(lua_State *L) {
  udpsock *u = crt_io_unbox(L, 1);
  if (u) {
    u->box = NULL;
    if (!u->closed)
      udp_close(u);
  }
  return 0;
}

static int u_index(lua_State *L) {
  udpsock *u = *(udpsock **)lua_touserdata(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && (strcmp(k, "port") == 0 || strcmp(k, "host") == 0)) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!u || u->closed || uv_udp_getsockname(&u->udp, (struct sockaddr *)&ss, &len) != 0) {
      lua_pushnil(L);
      return 1;
    }
    char host[INET6_ADDRSTRLEN];
    int port;
    crt_io_addr_parts((struct sockaddr *)&ss, host, sizeof host, &port);
    if (k[0] == 'p')
      lua_pushinteger(L, port);
    else
      lua_pushstring(L, host);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int u_tostring(lua_State *L) {
  udpsock **box = lua_touserdata(L, 1);
  lua_pushfstring(L, "crt.udp: %p%s", (void *)box, *box && !(*box)->closed ? "" : " (closed)");
  return 1;
}

/* Stack: 1 options, 2 socket box, 3 crt_net_addrs (when binding). */
static int udp_bind_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  static const char fname[] = "crt.net.udp";
  udpsock *u = *(udpsock **)lua_touserdata(L, 2);
  crt_net_addrs *al = lua_touserdata(L, 3);
  int bind = (int)ctx;
  if (bind && al->err)
    return crt_net_fail_at(L, al->err, crt_net_opt_host(L, 1, fname, CRT_NET_DEFAULT_HOST),
                           (int)crt_net_opt_int(L, 1, fname, "port", 0, 0, 65535));
  if (!u || u->closed)
    return crt_errorf(L, fname, "the socket was closed");
  if (bind) {
    int r = UV_EAI_NODATA;
    for (int i = 0; i < al->n && r < 0; i++)
      r = uv_udp_bind(&u->udp, (struct sockaddr *)&al->a[i], 0);
    if (r < 0) {
      int port = (int)crt_net_opt_int(L, 1, fname, "port", 0, 0, 65535);
      const char *host = crt_net_opt_host(L, 1, fname, CRT_NET_DEFAULT_HOST);
      udp_close(u);
      return crt_net_fail_at(L, r, host, port);
    }
  }
  lua_pushvalue(L, 2);
  return 1;
}

int crt_net_udp(lua_State *L) {
  static const char fname[] = "crt.net.udp";
  crt_net_check_opts(L, 1, fname);
  int has_host = 0, has_port = 0;
  if (lua_istable(L, 1)) {
    has_host = lua_getfield(L, 1, "host") != LUA_TNIL;
    has_port = lua_getfield(L, 1, "port") != LUA_TNIL;
    lua_pop(L, 2);
  }
  const char *host = crt_net_opt_host(L, 1, fname, CRT_NET_DEFAULT_HOST);
  int port = (int)crt_net_opt_int(L, 1, fname, "port", 0, 0, 65535);
  crt_task *t = crt_task_require(L, fname);
  lua_settop(L, 1);
  crt_io *io = crt_net_io(L);
  udpsock **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, UDP_MT);
  udpsock *u = calloc(1, sizeof *u);
  if (!u)
    return crt_pushfail(L, UV_ENOMEM, fname);
  int r = uv_udp_init(crt_rt_loop(io->rt), &u->udp);
  if (r < 0) {
    free(u);
    return crt_pushfail(L, r, fname);
  }
  u->close_fn = udp_close_fn;
  u->io = io;
  u->udp.data = u;
  uv_unref((uv_handle_t *)&u->udp);
  *box = u;
  u->box = box;
  if (!has_host && !has_port) {
    lua_pushnil(L); /* no crt_net_addrs: bound by the system at the first send */
    return udp_bind_k(L, LUA_OK, 0);
  }
  return crt_net_resolve_then(L, t, host, port, SOCK_DGRAM, udp_bind_k, 1);
}

/* ---- registration ---------------------------------------------------------- */

void crt_net_open_udp(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", u_send}, {"recv", u_recv}, {"close", u_close}, {NULL, NULL}};
  /* __index is a function (for host and port) over the methods table, its
   * upvalue. */
  static const luaL_Reg meta[] = {{"__index", u_index},
                                  {"__gc", u_gc},
                                  {"__close", u_close},
                                  {"__tostring", u_tostring},
                                  {NULL, NULL}};
  luaL_newlib(L, methods);
  crt_newclass(L, UDP_MT, NULL, meta, 1);
}
