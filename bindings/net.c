/*
 * net.c - crt.net: TCP clients (connect) and servers (listen, serve, accept),
 * UDP sockets and name resolution, on the runtime's libuv loop. The TCP
 * streams themselves are stream.c's.
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
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "util.h"
#include "rt.h"
#include "scheduler.h"
#include "stream.h"

#define SERVER_MT "crt.server"
#define UDP_MT "crt.udp"
#define MAX_ADDRS 16
#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_BACKLOG 1024

static const char wrapper_key = 'W';

static crt_io *io_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(2)); }

/* ---- arguments ------------------------------------------------------------ */

static int check_port(lua_State *L, int arg, const char *fname, int allow_zero) {
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
static const char *opt_host(lua_State *L, int arg, const char *fname, const char *dflt) {
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

static lua_Integer opt_int(lua_State *L, int arg, const char *fname, const char *field,
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

static void check_opts(lua_State *L, int arg, const char *fname) {
  if (!lua_isnoneornil(L, arg) && lua_type(L, arg) != LUA_TTABLE)
    crt_typeerror(L, fname, arg, "table");
}

/* ---- name resolution ------------------------------------------------------ */

/* Resolved addresses, kept as a userdata on the waiting task's stack. */
typedef struct addrlist {
  int err;
  int n;
  void *op; /* the request in flight (connect) */
  struct sockaddr_storage a[MAX_ADDRS];
} addrlist;

typedef struct gai_op {
  uv_getaddrinfo_t req;
  crt_task *t; /* NULL once the task went away */
  addrlist *al;
  int port;
} gai_op;

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* A numeric address ("127.0.0.1", "::1", "[::1]", "fe80::1%lo"). */
static int parse_numeric(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return 1;
  char tmp[INET6_ADDRSTRLEN + 32];
  size_t len = strlen(host);
  if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof tmp) {
    memcpy(tmp, host + 1, len - 2);
    tmp[len - 2] = '\0';
    host = tmp;
  }
  if (strchr(host, ':') && uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 1;
  return 0;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  gai_op *op = req->data;
  if (op->t) {
    addrlist *al = op->al;
    al->err = status;
    al->n = 0;
    for (struct addrinfo *ai = res; ai && al->n < MAX_ADDRS; ai = ai->ai_next) {
      if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
          ai->ai_addrlen > sizeof al->a[0])
        continue;
      memset(&al->a[al->n], 0, sizeof al->a[0]);
      memcpy(&al->a[al->n], ai->ai_addr, ai->ai_addrlen);
      set_port(&al->a[al->n], op->port);
      al->n++;
    }
    if (status == 0 && al->n == 0)
      al->err = UV_EAI_NODATA;
    crt_task_wake(op->t, 0);
  }
  uv_freeaddrinfo(res);
  free(op);
}

static void gai_unpark(crt_task *t, void *data) {
  gai_op *op = data;
  (void)t;
  op->t = NULL;
  uv_cancel((uv_req_t *)&op->req); /* gai_cb runs anyway and frees op */
}

/* Push an addrlist for host:port, then continue in k (directly for a
 * numeric address, after resolution otherwise). */
static int resolve_then(lua_State *L, crt_task *t, const char *host, int port, int socktype,
                        lua_KFunction k, lua_KContext ctx) {
  crt_runtime *rt = crt_task_rt(t);
  addrlist *al = lua_newuserdatauv(L, sizeof *al, 0);
  al->err = 0;
  al->n = 0;
  al->op = NULL;
  if (parse_numeric(host, port, &al->a[0])) {
    al->n = 1;
    return k(L, LUA_OK, ctx);
  }
  gai_op *op = malloc(sizeof *op);
  if (!op) {
    al->err = UV_ENOMEM;
    return k(L, LUA_OK, ctx);
  }
  op->t = t;
  op->al = al;
  op->port = port;
  op->req.data = op;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  int r = uv_getaddrinfo(crt_rt_loop(rt), &op->req, gai_cb, host, NULL, &hints);
  if (r < 0) {
    free(op);
    al->err = r;
    return k(L, LUA_OK, ctx);
  }
  return crt_task_park(L, t, gai_unpark, op, k, ctx);
}

/* nil, "<host>:<port>: message", code */
static int fail_at(lua_State *L, int err, const char *host, int port) {
  if (strchr(host, ':') && host[0] != '[')
    lua_pushfstring(L, "[%s]:%d", host, port);
  else
    lua_pushfstring(L, "%s:%d", host, port);
  crt_pushfail(L, err, lua_tostring(L, -1));
  lua_remove(L, -4);
  return 3;
}

/* crt.net.resolve(host) -> {addresses} */
static int resolve_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  addrlist *al = lua_touserdata(L, 2);
  if (al->err)
    return crt_pushfail(L, al->err, lua_tostring(L, 1));
  lua_createtable(L, al->n, 0);
  int n = 0;
  for (int i = 0; i < al->n; i++) {
    char host[INET6_ADDRSTRLEN];
    int port;
    crt_io_addr_parts((struct sockaddr *)&al->a[i], host, sizeof host, &port);
    int dup = 0;
    for (int j = 1; j <= n && !dup; j++) {
      lua_rawgeti(L, -1, j);
      dup = strcmp(lua_tostring(L, -1), host) == 0;
      lua_pop(L, 1);
    }
    if (!dup) {
      lua_pushstring(L, host);
      lua_rawseti(L, -2, ++n);
    }
  }
  return 1;
}

static int l_resolve(lua_State *L) {
  const char *host = crt_io_checkname(L, 1, "crt.net.resolve", NULL);
  crt_task *t = crt_task_require(L, "crt.net.resolve");
  lua_settop(L, 1);
  return resolve_then(L, t, host, 0, SOCK_STREAM, resolve_k, 0);
}

/* ---- connect --------------------------------------------------------------- */

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

/* Stack: 1 host, 2 port, 3 stream box, 4 addrlist. Try address i and on. */
static int connect_try(lua_State *L, crt_task *t, int i, int lasterr) {
  addrlist *al = lua_touserdata(L, 4);
  crt_io *io = io_of(L);
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
  return fail_at(L, lasterr ? lasterr : UV_EAI_NODATA, lua_tostring(L, 1),
                 (int)lua_tointeger(L, 2));
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  addrlist *al = lua_touserdata(L, 4);
  conn_op *op = al->op;
  al->op = NULL;
  crt_stream *s = op->s;
  int st = op->status;
  free(op);
  if (st < 0) {
    crt_stream_abort(s);
    return connect_try(L, crt_task_current(L), (int)ctx + 1, st);
  }
  crt_stream **box = lua_touserdata(L, 3);
  crt_stream_attach(box, s);
  uv_tcp_nodelay(&s->u.tcp, 1);
  crt_stream_set_peer(s);
  lua_pushvalue(L, 3);
  return 1;
}

static int resolved_connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  addrlist *al = lua_touserdata(L, 4);
  if (al->err)
    return fail_at(L, al->err, lua_tostring(L, 1), (int)lua_tointeger(L, 2));
  return connect_try(L, crt_task_current(L), 0, 0);
}

static int l_connect(lua_State *L) {
  static const char fname[] = "crt.net.connect";
  const char *host = crt_io_checkname(L, 1, fname, NULL);
  int port = check_port(L, 2, fname, 0);
  crt_task *t = crt_task_require(L, fname);
  lua_settop(L, 2);
  crt_stream_newbox(L);
  return resolve_then(L, t, host, port, SOCK_STREAM, resolved_connect_k, 0);
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

/* serve: start a task running wrapper(handler, stream) for a new connection.
 * Runs under lua_pcall on the main state (a libuv callback has no other
 * protection against memory errors). */
static int serve_spawn(lua_State *L) {
  server *sv = lua_touserdata(L, 1);
  crt_stream **box = crt_stream_newbox(L);
  int err;
  crt_stream *s = crt_stream_new(sv->io, CRT_STREAM_TCP, &err);
  if (!s)
    return luaL_error(L, "%s", uv_strerror(err));
  err = uv_accept((uv_stream_t *)&sv->tcp, &s->u.stream);
  if (err < 0) {
    crt_stream_abort(s);
    return luaL_error(L, "%s", uv_strerror(err));
  }
  crt_stream_attach(box, s);
  uv_tcp_nodelay(&s->u.tcp, 1);
  crt_stream_set_peer(s);
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

static server *check_server(lua_State *L, const char *fname) {
  server **box = luaL_testudata(L, 1, SERVER_MT);
  if (!box) {
    crt_typeerror(L, fname, 1, "server");
    return NULL;
  }
  return *box;
}

/* Accept into the stream box at index 2. */
static int do_accept(lua_State *L, server *sv) {
  if (sv->err) {
    int e = sv->err;
    sv->err = 0;
    return crt_pushfail(L, e, "server:accept");
  }
  sv->pending = 0;
  int err;
  crt_stream *s = crt_stream_new(sv->io, CRT_STREAM_TCP, &err);
  if (!s)
    return crt_pushfail(L, err, "server:accept");
  err = uv_accept((uv_stream_t *)&sv->tcp, &s->u.stream);
  if (err < 0) {
    crt_stream_abort(s);
    return crt_pushfail(L, err, "server:accept");
  }
  crt_stream **box = lua_touserdata(L, 2);
  crt_stream_attach(box, s);
  uv_tcp_nodelay(&s->u.tcp, 1);
  crt_stream_set_peer(s);
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

static int sv_close(lua_State *L) {
  server *sv = check_server(L, "server:close");
  if (sv && !sv->closed)
    server_close(sv);
  lua_pushboolean(L, 1);
  return 1;
}

static int sv_gc(lua_State *L) {
  server **box = lua_touserdata(L, 1);
  server *sv = *box;
  if (sv) {
    *box = NULL;
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
  if (k && strcmp(k, "port") == 0) {
    if (sv)
      lua_pushinteger(L, sv->port);
    else
      lua_pushnil(L);
    return 1;
  }
  if (k && strcmp(k, "host") == 0) {
    if (sv)
      lua_pushstring(L, sv->host);
    else
      lua_pushnil(L);
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

/* Stack: 1 options, 2 handler or nil, 3 server box, 4 addrlist. */
static int listen_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  const char *fname = (const char *)ctx;
  addrlist *al = lua_touserdata(L, 4);
  const char *host = opt_host(L, 1, fname, DEFAULT_HOST);
  int port = (int)opt_int(L, 1, fname, "port", 0, 0, 65535);
  int backlog = (int)opt_int(L, 1, fname, "backlog", DEFAULT_BACKLOG, 1, 65535);
  if (al->err)
    return fail_at(L, al->err, host, port);
  crt_io *io = io_of(L);
  int handler = LUA_NOREF;
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    handler = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  server *sv = calloc(1, sizeof *sv);
  if (!sv) {
    luaL_unref(L, LUA_REGISTRYINDEX, handler);
    return fail_at(L, UV_ENOMEM, host, port);
  }
  sv->close_fn = server_close_fn;
  sv->io = io;
  sv->handler = handler;
  int r = uv_tcp_init(crt_rt_loop(io->rt), &sv->tcp);
  if (r < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, handler);
    free(sv);
    return fail_at(L, r, host, port);
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
    return fail_at(L, r, host, port);
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
  check_opts(L, 1, fname);
  const char *host = opt_host(L, 1, fname, DEFAULT_HOST);
  int port = (int)opt_int(L, 1, fname, "port", 0, 0, 65535);
  opt_int(L, 1, fname, "backlog", DEFAULT_BACKLOG, 1, 65535);
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
  return resolve_then(L, t, host, port, SOCK_STREAM, listen_k, (lua_KContext)fname);
}

static int l_listen(lua_State *L) { return start_listen(L, "crt.net.listen", 0); }
static int l_serve(lua_State *L) { return start_listen(L, "crt.net.serve", 1); }

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

static void udp_close(udpsock *u) {
  u->closed = 1;
  udp_stop(u);
  if (u->receiver) {
    crt_task *t = u->receiver;
    u->receiver = NULL;
    udp_release(u);
    crt_task_wake(t, 0);
  }
  if (!uv_is_closing((uv_handle_t *)&u->udp))
    uv_close((uv_handle_t *)&u->udp, udp_close_cb);
}

static void udp_close_fn(uv_handle_t *h) { udp_close(h->data); }

static udpsock *check_udp(lua_State *L, const char *fname) {
  udpsock **box = luaL_testudata(L, 1, UDP_MT);
  if (!box) {
    crt_typeerror(L, fname, 1, "udp socket");
    return NULL;
  }
  if (!*box || (*box)->closed) {
    crt_errorf(L, fname, "the socket is closed");
    return NULL;
  }
  return *box;
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
  udp_stop(u);
  crt_task *t = u->receiver;
  u->receiver = NULL;
  udp_release(u);
  crt_task_wake(t, 0);
}

static void recv_unpark(crt_task *t, void *data) {
  udpsock *u = data;
  (void)t;
  u->receiver = NULL;
  udp_stop(u);
  udp_release(u);
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

/* Stack: 1 socket, 2 data, 3 host, 4 port, 5 addrlist. */
static int send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  static const char fname[] = "socket:send";
  udpsock *u = *(udpsock **)lua_touserdata(L, 1);
  addrlist *al = lua_touserdata(L, 5);
  if (al->err)
    return fail_at(L, al->err, lua_tostring(L, 3), (int)lua_tointeger(L, 4));
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
  int port = check_port(L, 4, fname, 0);
  crt_task *t = crt_task_require(L, fname);
  size_t len;
  lua_tolstring(L, 2, &len);
  if (len > 65535)
    return crt_argerror(L, fname, 2, "datagram too large (at most 65535 bytes)");
  lua_settop(L, 4);
  return resolve_then(L, t, host, port, SOCK_DGRAM, send_k, 0);
}

static int u_close(lua_State *L) {
  udpsock **box = luaL_testudata(L, 1, UDP_MT);
  if (!box)
    return crt_typeerror(L, "socket:close", 1, "udp socket");
  if (*box && !(*box)->closed)
    udp_close(*box);
  lua_pushboolean(L, 1);
  return 1;
}

static int u_gc(lua_State *L) {
  udpsock **box = lua_touserdata(L, 1);
  udpsock *u = *box;
  if (u) {
    *box = NULL;
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

/* Stack: 1 options, 2 socket box, 3 addrlist (when binding). */
static int udp_bind_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  static const char fname[] = "crt.net.udp";
  udpsock *u = *(udpsock **)lua_touserdata(L, 2);
  addrlist *al = lua_touserdata(L, 3);
  int bind = (int)ctx;
  if (bind && al->err)
    return fail_at(L, al->err, opt_host(L, 1, fname, DEFAULT_HOST),
                   (int)opt_int(L, 1, fname, "port", 0, 0, 65535));
  if (!u || u->closed)
    return crt_errorf(L, fname, "the socket was closed");
  if (bind) {
    int r = UV_EAI_NODATA;
    for (int i = 0; i < al->n && r < 0; i++)
      r = uv_udp_bind(&u->udp, (struct sockaddr *)&al->a[i], 0);
    if (r < 0) {
      int port = (int)opt_int(L, 1, fname, "port", 0, 0, 65535);
      const char *host = opt_host(L, 1, fname, DEFAULT_HOST);
      udp_close(u);
      return fail_at(L, r, host, port);
    }
  }
  lua_pushvalue(L, 2);
  return 1;
}

static int l_udp(lua_State *L) {
  static const char fname[] = "crt.net.udp";
  check_opts(L, 1, fname);
  int has_host = 0, has_port = 0;
  if (lua_istable(L, 1)) {
    has_host = lua_getfield(L, 1, "host") != LUA_TNIL;
    has_port = lua_getfield(L, 1, "port") != LUA_TNIL;
    lua_pop(L, 2);
  }
  const char *host = opt_host(L, 1, fname, DEFAULT_HOST);
  int port = (int)opt_int(L, 1, fname, "port", 0, 0, 65535);
  crt_task *t = crt_task_require(L, fname);
  lua_settop(L, 1);
  crt_io *io = io_of(L);
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
    lua_pushnil(L); /* no addrlist: bound by the system at the first send */
    return udp_bind_k(L, LUA_OK, 0);
  }
  return resolve_then(L, t, host, port, SOCK_DGRAM, udp_bind_k, 1);
}

/* ---- registration ---------------------------------------------------------- */

static const char wrapper_src[] = "local handler, stream <close> = ...\n"
                                  "handler(stream)\n";

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction index,
                      lua_CFunction gc, lua_CFunction close, lua_CFunction tostring) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

void crt_open_net(lua_State *L, crt_runtime *rt) {
  crt_io *io = crt_io_get(L, rt);
  crt_io_ignore_sigpipe();
  crt_stream_open(L);
  static const luaL_Reg server_methods[] = {
      {"accept", sv_accept}, {"close", sv_close}, {NULL, NULL}};
  new_class(L, SERVER_MT, server_methods, sv_index, sv_gc, sv_close, sv_tostring);
  static const luaL_Reg udp_methods[] = {
      {"send", u_send}, {"recv", u_recv}, {"close", u_close}, {NULL, NULL}};
  new_class(L, UDP_MT, udp_methods, u_index, u_gc, u_close, u_tostring);

  if (luaL_loadbuffer(L, wrapper_src, sizeof wrapper_src - 1, "=[crt.net.serve]") != LUA_OK)
    lua_error(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &wrapper_key);

  static const luaL_Reg funcs[] = {{"connect", l_connect}, {"listen", l_listen},
                                   {"serve", l_serve},     {"udp", l_udp},
                                   {"resolve", l_resolve}, {NULL, NULL}};
  lua_createtable(L, 0, 5);
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, io);
  luaL_setfuncs(L, funcs, 2);
  lua_setfield(L, -2, "net");
}
