/*
 * net_tcp.c - TCP for crt.net: connect (trying each resolved address in
 * turn), listen and serve, and the server class (accept, close). The
 * connections are streams (stream.c).
 *
 * Loop thread only. A server is a malloc'd struct around a uv_tcp_t, freed
 * by the handle's close callback; its Lua box only points at it. A listen()
 * server is ref'd while a task waits in accept; a serve() server starts a
 * task per connection by itself and is a waker (io.h).
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "net.h"
#include "rt.h"
#include "scheduler.h"
#include "stream.h"
#include "util.h"

#define SERVER_MT "crt.server"
#define DEFAULT_BACKLOG 1024

static const char wrapper_key = 'W';

/* ---- connect --------------------------------------------------------------- */

/* Give the connected stream s to its Lua box. */
static void tcp_attach(crt_stream **box, crt_stream *s) {
  crt_stream_attach(box, s);
  uv_tcp_nodelay(&s->u.tcp, 1);
  crt_stream_set_peer(s);
}

typedef struct conn_op {
  uv_connect_t req;
  crt_task *t; /* NULL once cancelled */
  crt_stream *s;
  int status;
} conn_op;

static void connect_cb(uv_connect_t *req, int status) {
  conn_op *op = req->data;
  if (!op->t) {
    free(op); /* cancelled: the stream is closing on its own */
    return;
  }
  op->status = status;
  crt_task *t = op->t;
  op->t = NULL;
  crt_task_wake(t, 0);
}

static void connect_unpark(crt_task *t, void *data) {
  conn_op *op = data;
  (void)t;
  op->t = NULL;
  crt_stream_abort(op->s); /* connect_cb gets ECANCELED and frees op */
}

static int connect_k(lua_State *L, int status, lua_KContext ctx);

/* Stack: 1 host, 2 port, 3 stream box, 4 crt_net_addrs. Try address i and on. */
static int connect_try(lua_State *L, crt_task *t, int i, int lasterr) {
  crt_net_addrs *al = lua_touserdata(L, 4);
  crt_io *io = crt_net_io(L);
  for (; i < al->n; i++) {
    int err;
    crt_stream *s = crt_stream_new(io, CRT_STREAM_TCP, &err);
    if (!s) {
      lasterr = err;
      continue;
    }
    conn_op *op = malloc(sizeof *op);
    if (!op) {
      crt_stream_abort(s);
      lasterr = UV_ENOMEM;
      continue;
    }
    op->t = t;
    op->s = s;
    op->status = 0;
    op->req.data = op;
    int r = uv_tcp_connect(&op->req, &s->u.tcp, (struct sockaddr *)&al->a[i], connect_cb);
    if (r < 0) {
      free(op);
      crt_stream_abort(s);
      lasterr = r;
      continue;
    }
    al->op = op;
    return crt_task_park(L, t, connect_unpark, op, connect_k, i);
  }
  return crt_net_fail_at(L, lasterr ? lasterr : UV_EAI_NODATA, lua_tostring(L, 1),
                         (int)lua_tointeger(L, 2));
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  crt_net_addrs *al = lua_touserdata(L, 4);
  conn_op *op = al->op;
  al->op = NULL;
  crt_stream *s = op->s;
  int st = op->status;
  free(op);
  if (st < 0) {
    crt_stream_abort(s);
    return connect_try(L, crt_task_current(L), (int)ctx + 1, st);
  }
  tcp_attach(lua_touserdata(L, 3), s);
  lua_pushvalue(L, 3);
  return 1;
}

static int resolved_connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  crt_net_addrs *al = lua_touserdata(L, 4);
  if (al->err)
    return crt_net_fail_at(L, al->err, lua_tostring(L, 1), (int)lua_tointeger(L, 2));
  return connect_try(L, crt_task_current(L), 0, 0);
}

int crt_net_connect(lua_State *L) {
  static const char fname[] = "crt.net.connect";
  const char *host = crt_io_checkname(L, 1, fname, NULL);
  int port = crt_net_check_port(L, 2, fname, 0);
  crt_task *t = crt_task_require(L, fname);
  lua_settop(L, 2);
  crt_stream_newbox(L);
  return crt_net_resolve_then(L, t, host, port, SOCK_STREAM, resolved_connect_k, 0);
}

/* ---- servers ------------------------------------------------------------------ */

typedef struct server {
  crt_handle_close_fn close_fn; /* must stay first */
  uv_tcp_t tcp;
  crt_io *io;
  struct server **box;
  crt_task *acceptor;
  int pending; /* a connection libuv holds for the next accept */
  int err;     /* a failed accept to report */
  int closed;
  int handler;        /* serve: registry ref of the handler; LUA_NOREF for listen */
  crt_io_waker waker; /* serve: new connections start tasks (see io.h) */
  int port;
  char host[INET6_ADDRSTRLEN];
} server;

static void server_close_cb(uv_handle_t *h) {
  server *sv = h->data;
  if (sv->handler != LUA_NOREF)
    luaL_unref(crt_lua(sv->io->rt), LUA_REGISTRYINDEX, sv->handler);
  if (sv->box)
    *sv->box = NULL;
  free(sv);
}

static void server_close(server *sv) {
  sv->closed = 1;
  crt_io_waker_remove(sv->io, &sv->waker);
  if (sv->acceptor) {
    crt_task *t = sv->acceptor;
    sv->acceptor = NULL;
    crt_task_wake(t, 0);
  }
  if (!uv_is_closing((uv_handle_t *)&sv->tcp))
    uv_close((uv_handle_t *)&sv->tcp, server_close_cb);
}

static void server_close_fn(uv_handle_t *h) { server_close(h->data); }

/* Accept the connection libuv holds into a new stream given to box;
 * returns 0 or an error. */
static int accept_into(server *sv, crt_stream **box) {
  int err;
  crt_stream *s = crt_stream_new(sv->io, CRT_STREAM_TCP, &err);
  if (!s)
    return err;
  err = uv_accept((uv_stream_t *)&sv->tcp, &s->u.stream);
  if (err < 0) {
    crt_stream_abort(s);
    return err;
  }
  tcp_attach(box, s);
  return 0;
}

/* serve: start a task running wrapper(handler, stream) for a new connection.
 * Runs under lua_pcall on the main state (a libuv callback has no other
 * protection against memory errors). */
static int serve_spawn(lua_State *L) {
  server *sv = lua_touserdata(L, 1);
  int err = accept_into(sv, crt_stream_newbox(L));
  if (err < 0)
    return luaL_error(L, "%s", uv_strerror(err));
  lua_rawgetp(L, LUA_REGISTRYINDEX, &wrapper_key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, sv->handler);
  lua_pushvalue(L, -3);
  crt_task_spawn(sv->io->rt, L, 2);
  return 0;
}

static void connection_cb(uv_stream_t *h, int status) {
  server *sv = h->data;
  crt_runtime *rt = sv->io->rt;
  if (sv->handler != LUA_NOREF) {
    const char *msg = NULL;
    int n;
    lua_State *L = crt_lua(rt);
    if (status < 0) {
      lua_pushfstring(L, "crt.net.serve: cannot accept a connection: %s", uv_strerror(status));
      msg = lua_tostring(L, -1);
      n = 1;
    } else if (crt_io_pcall(L, serve_spawn, sv, &n) != LUA_OK) {
      lua_pushfstring(L, "crt.net.serve: cannot accept a connection: %s", lua_tostring(L, -1));
      msg = lua_tostring(L, -1);
      n++;
    }
    if (msg)
      crt_rt_log(rt, CRT_LOG_WARN, msg);
    lua_pop(L, n);
    return;
  }
  if (status < 0)
    sv->err = status;
  else
    sv->pending = 1;
  if (sv->acceptor) {
    crt_task *t = sv->acceptor;
    sv->acceptor = NULL;
    uv_unref((uv_handle_t *)&sv->tcp);
    crt_task_wake(t, 0);
  }
}

/* The server at index 1, NULL when closed. */
static server *check_server(lua_State *L, const char *fname) {
  return crt_checkptr(L, 1, SERVER_MT, "server", fname);
}

/* Accept into the stream box at index 2. */
static int do_accept(lua_State *L, server *sv) {
  if (sv->err) {
    int e = sv->err;
    sv->err = 0;
    return crt_pushfail(L, e, "server:accept");
  }
  sv->pending = 0;
  int err = accept_into(sv, lua_touserdata(L, 2));
  if (err < 0)
    return crt_pushfail(L, err, "server:accept");
  lua_pushvalue(L, 2);
  return 1;
}

static void accept_unpark(crt_task *t, void *data) {
  server *sv = data;
  (void)t;
  sv->acceptor = NULL;
  if (!uv_is_closing((uv_handle_t *)&sv->tcp))
    uv_unref((uv_handle_t *)&sv->tcp);
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  server *sv = *(server **)lua_touserdata(L, 1);
  if (!sv || sv->closed) {
    lua_pushnil(L);
    return 1;
  }
  return do_accept(L, sv);
}

static int sv_accept(lua_State *L) {
  static const char fname[] = "server:accept";
  server *sv = check_server(L, fname);
  crt_task *t = crt_task_require(L, fname);
  if (!sv || sv->closed) {
    lua_pushnil(L);
    return 1;
  }
  if (sv->handler != LUA_NOREF)
    return crt_errorf(L, fname, "this server hands its connections to its handler (serve)");
  if (sv->acceptor)
    return crt_errorf(L, fname, "another task is already accepting on this server");
  lua_settop(L, 1);
  crt_stream_newbox(L);
  if (sv->pending || sv->err)
    return do_accept(L, sv);
  sv->acceptor = t;
  uv_ref((uv_handle_t *)&sv->tcp);
  return crt_task_park(L, t, accept_unpark, sv, accept_k, 0);
}

/* server_close is harmless on a closed server. */
static void close_obj(void *sv) { server_close(sv); }

static int sv_close(lua_State *L) {
  return crt_io_close_method(L, SERVER_MT, "server", "server:close", close_obj);
}

static int sv_gc(lua_State *L) {
  server *sv = crt_io_unbox(L, 1);
  if (sv) {
    sv->box = NULL;
    /* A listen() server nobody can reach can accept nothing: close it. A
     * serve() server keeps serving until close() or the end of crt. */
    if (sv->handler == LUA_NOREF && !sv->closed)
      server_close(sv);
  }
  return 0;
}

static int sv_index(lua_State *L) {
  server *sv = *(server **)lua_touserdata(L, 1);
  const char *k = lua_tostring(L, 2);
  if (sv && sv->closed)
    sv = NULL;
  if (k && (strcmp(k, "port") == 0 || strcmp(k, "host") == 0)) {
    if (!sv)
      lua_pushnil(L);
    else if (k[0] == 'p')
      lua_pushinteger(L, sv->port);
    else
      lua_pushstring(L, sv->host);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int sv_tostring(lua_State *L) {
  server **box = lua_touserdata(L, 1);
  if (*box && !(*box)->closed)
    lua_pushfstring(L, "crt.server: %p (%s port %d)", (void *)box, (*box)->host, (*box)->port);
  else
    lua_pushfstring(L, "crt.server: %p (closed)", (void *)box);
  return 1;
}

/* Stack: 1 options, 2 handler or nil, 3 server box, 4 crt_net_addrs. */
static int listen_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  const char *fname = (const char *)ctx;
  crt_net_addrs *al = lua_touserdata(L, 4);
  const char *host = crt_net_opt_host(L, 1, fname, CRT_NET_DEFAULT_HOST);
  int port = (int)crt_net_opt_int(L, 1, fname, "port", 0, 0, 65535);
  int backlog = (int)crt_net_opt_int(L, 1, fname, "backlog", DEFAULT_BACKLOG, 1, 65535);
  if (al->err)
    return crt_net_fail_at(L, al->err, host, port);
  crt_io *io = crt_net_io(L);
  int handler = LUA_NOREF;
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    handler = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  server *sv = calloc(1, sizeof *sv);
  if (!sv) {
    luaL_unref(L, LUA_REGISTRYINDEX, handler);
    return crt_net_fail_at(L, UV_ENOMEM, host, port);
  }
  sv->close_fn = server_close_fn;
  sv->io = io;
  sv->handler = handler;
  int r = uv_tcp_init(crt_rt_loop(io->rt), &sv->tcp);
  if (r < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, handler);
    free(sv);
    return crt_net_fail_at(L, r, host, port);
  }
  sv->tcp.data = sv;
  uv_unref((uv_handle_t *)&sv->tcp);
  r = UV_EAI_NODATA;
  for (int i = 0; i < al->n; i++) {
    r = uv_tcp_bind(&sv->tcp, (struct sockaddr *)&al->a[i], 0);
    if (r == 0)
      r = uv_listen((uv_stream_t *)&sv->tcp, backlog, connection_cb);
    if (r == 0)
      break;
  }
  if (r < 0) {
    server_close(sv); /* frees sv and the handler ref */
    return crt_net_fail_at(L, r, host, port);
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&sv->tcp, (struct sockaddr *)&ss, &len);
  crt_io_addr_parts((struct sockaddr *)&ss, sv->host, sizeof sv->host, &sv->port);
  if (handler != LUA_NOREF)
    crt_io_waker_add(io, &sv->waker, (uv_handle_t *)&sv->tcp);
  server **box = lua_touserdata(L, 3);
  *box = sv;
  sv->box = box;
  lua_pushvalue(L, 3);
  return 1;
}

static int start_listen(lua_State *L, const char *fname, int serve) {
  crt_net_check_opts(L, 1, fname);
  const char *host = crt_net_opt_host(L, 1, fname, CRT_NET_DEFAULT_HOST);
  int port = (int)crt_net_opt_int(L, 1, fname, "port", 0, 0, 65535);
  crt_net_opt_int(L, 1, fname, "backlog", DEFAULT_BACKLOG, 1, 65535);
  if (serve && lua_type(L, 2) != LUA_TFUNCTION)
    return crt_typeerror(L, fname, 2, "function");
  crt_task *t = crt_task_require(L, fname);
  if (serve) {
    lua_settop(L, 2);
  } else {
    lua_settop(L, 1);
    lua_pushnil(L);
  }
  server **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, SERVER_MT);
  return crt_net_resolve_then(L, t, host, port, SOCK_STREAM, listen_k, (lua_KContext)fname);
}

int crt_net_listen(lua_State *L) { return start_listen(L, "crt.net.listen", 0); }
int crt_net_serve(lua_State *L) { return start_listen(L, "crt.net.serve", 1); }

/* ---- registration ---------------------------------------------------------- */

static const char wrapper_src[] = "local handler, stream <close> = ...\n"
                                  "handler(stream)\n";

void crt_net_open_tcp(lua_State *L) {
  static const luaL_Reg methods[] = {{"accept", sv_accept}, {"close", sv_close}, {NULL, NULL}};
  /* __index is a function (for host and port) over the methods table, its
   * upvalue. */
  static const luaL_Reg meta[] = {{"__index", sv_index},
                                  {"__gc", sv_gc},
                                  {"__close", sv_close},
                                  {"__tostring", sv_tostring},
                                  {NULL, NULL}};
  luaL_newlib(L, methods);
  crt_newclass(L, SERVER_MT, NULL, meta, 1);
  if (luaL_loadbuffer(L, wrapper_src, sizeof wrapper_src - 1, "=[crt.net.serve]") != LUA_OK)
    lua_error(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &wrapper_key);
}
