/*
 * net_dns.c - name resolution for crt.net: numeric addresses parsed at
 * once, names through libuv's getaddrinfo (on its thread pool), and
 * crt.net.resolve.
 *
 * Loop thread only. The resolved addresses are a userdata (crt_net_addrs)
 * on the waiting task's stack; a cancelled task's request is uv_cancel'led
 * and freed by its callback, which then touches nothing else.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "net.h"
#include "rt.h"
#include "util.h"

typedef struct gai_op {
  uv_getaddrinfo_t req;
  crt_task *t; /* NULL once the task went away */
  crt_net_addrs *al;
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
    crt_net_addrs *al = op->al;
    al->err = status;
    al->n = 0;
    for (struct addrinfo *ai = res; ai && al->n < CRT_NET_MAX_ADDRS; ai = ai->ai_next) {
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

/* Push an crt_net_addrs for host:port, then continue in k (directly for a
 * numeric address, after resolution otherwise). */
int crt_net_resolve_then(lua_State *L, crt_task *t, const char *host, int port, int socktype,
                         lua_KFunction k, lua_KContext ctx) {
  crt_runtime *rt = crt_task_rt(t);
  crt_net_addrs *al = lua_newuserdatauv(L, sizeof *al, 0);
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

/* crt.net.resolve(host) -> {addresses} */
static int resolve_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  crt_net_addrs *al = lua_touserdata(L, 2);
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

int crt_net_resolve(lua_State *L) {
  const char *host = crt_io_checkname(L, 1, "crt.net.resolve", NULL);
  crt_task *t = crt_task_require(L, "crt.net.resolve");
  lua_settop(L, 1);
  return crt_net_resolve_then(L, t, host, 0, SOCK_STREAM, resolve_k, 0);
}
