/*
 * io.c - the per-runtime I/O context shared by crt.fs, crt.net, crt.signal
 * and crt.process.exec/command, and their small helpers (names, signals,
 * protected pushing, boxed objects, module tables, address formatting).
 *
 * Loop thread only. The context is a userdata of the runtime's Lua state,
 * pinned in the registry: it lives until lua_close, after every handle is
 * closed (crt_close closes the loop first; in module mode the state's
 * finalizers run before its memory is freed).
 *
 * Shutdown: the runtime cancels every task, then runs the loop until nothing
 * keeps it alive, then closes what is left. The handles of these bindings are
 * referenced (uv_ref) only while a task waits on them, so an idle socket, a
 * server or a running child never hold up that run; but a write request
 * does. The prepare handle here notices the runtime closing and gives
 * pending writes a grace period (CRT_IO_GRACE) to flush before closing every
 * stream, so that a peer that never reads cannot hang the exit.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "util.h"
#include "stream.h"

#define CRT_IO_GRACE_MS 2000

static const char io_key = 'I';

/* ---- the closing watch ----------------------------------------------------- */

static void grace_fire(uv_timer_t *h) {
  crt_io *io = ((struct crt_io_timer *)h->data)->io;
  crt_stream_close_all(io, 1);
}

void crt_io_waker_add(crt_io *io, crt_io_waker *w, uv_handle_t *h) {
  w->h = h;
  crt_list_push_front(&io->wakers, &w->link);
  if (!io->closing_seen)
    uv_ref(h);
}

void crt_io_waker_remove(crt_io *io, crt_io_waker *w) {
  if (!w->h)
    return;
  crt_list_remove(&io->wakers, &w->link);
  w->h = NULL;
}

static void watch_cb(uv_prepare_t *h) {
  crt_io *io = h->data;
  if (!crt_rt_is_closing(io->rt) || io->closing_seen)
    return;
  io->closing_seen = 1;
  uv_prepare_stop(h);
  crt_list_each_safe(&io->wakers, it, nx) uv_unref(crt_container_of(it, crt_io_waker, link)->h);
  if (crt_stream_close_all(io, 0)) {
    uv_timer_start(&io->grace.timer, grace_fire, CRT_IO_GRACE_MS, 0);
  }
}

static void close_watch(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL); /* the memory is the Lua state's: nothing to free */
}

crt_io *crt_io_get(lua_State *L, crt_runtime *rt) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &io_key);
  crt_io *io = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (io)
    return io;
  io = lua_newuserdatauv(L, sizeof *io, 0);
  memset(io, 0, sizeof *io);
  io->rt = rt;
  io->close_fn = close_watch;
  io->grace.close_fn = close_watch;
  io->grace.io = io;
  uv_prepare_init(crt_rt_loop(rt), &io->watch);
  io->watch.data = io;
  uv_prepare_start(&io->watch, watch_cb);
  uv_unref((uv_handle_t *)&io->watch);
  uv_timer_init(crt_rt_loop(rt), &io->grace.timer);
  io->grace.timer.data = &io->grace;
  uv_unref((uv_handle_t *)&io->grace.timer);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &io_key);
  return io;
}

/* ---- arguments ------------------------------------------------------------ */

const char *crt_io_checkname(lua_State *L, int arg, const char *fname, size_t *lenp) {
  if (lua_type(L, arg) != LUA_TSTRING)
    crt_typeerror(L, fname, arg, "string");
  size_t len;
  const char *s = lua_tolstring(L, arg, &len);
  if (strlen(s) != len)
    crt_argerror(L, fname, arg, "string contains a NUL byte");
  if (len == 0)
    crt_argerror(L, fname, arg, "empty string");
  if (lenp)
    *lenp = len;
  return s;
}

static const struct {
  const char *name;
  int num;
} signals[] = {
    {"SIGHUP", SIGHUP},       {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},   {"SIGILL", SIGILL},
    {"SIGTRAP", SIGTRAP},     {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS},     {"SIGFPE", SIGFPE},
    {"SIGKILL", SIGKILL},     {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE},     {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},   {"SIGCHLD", SIGCHLD},
    {"SIGCONT", SIGCONT},     {"SIGSTOP", SIGSTOP}, {"SIGTSTP", SIGTSTP},   {"SIGTTIN", SIGTTIN},
    {"SIGTTOU", SIGTTOU},     {"SIGURG", SIGURG},   {"SIGXCPU", SIGXCPU},   {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH}, {"SIGIO", SIGIO},
    {"SIGSYS", SIGSYS},
};

int crt_io_checksignal(lua_State *L, int arg, const char *fname) {
  int t = lua_type(L, arg);
  if (t == LUA_TNUMBER) {
    int isint;
    lua_Integer n = lua_tointegerx(L, arg, &isint);
    if (!isint || n < 1 || n >= NSIG)
      crt_argerror(L, fname, arg, "not a signal number");
    return (int)n;
  }
  if (t != LUA_TSTRING)
    return crt_typeerror(L, fname, arg, "signal name or number");
  const char *s = lua_tostring(L, arg);
  const char *bare = strncmp(s, "SIG", 3) == 0 ? s + 3 : s;
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (strcmp(signals[i].name + 3, bare) == 0)
      return signals[i].num;
  lua_pushfstring(L, "unknown signal '%s'", s);
  return crt_argerror(L, fname, arg, lua_tostring(L, -1));
}

const char *crt_io_signame(int signum) {
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (signals[i].num == signum)
      return signals[i].name;
  return NULL;
}

void crt_io_pushsignal(lua_State *L, int signum) {
  const char *name = crt_io_signame(signum);
  if (name)
    lua_pushstring(L, name);
  else
    lua_pushinteger(L, signum);
}

/* ---- protected pushing ---------------------------------------------------- */

int crt_io_pcall(lua_State *L, lua_CFunction fn, void *ud, int *nres) {
  int base = lua_gettop(L);
  if (!lua_checkstack(L, 3)) {
    *nres = 0;
    lua_pushliteral(L, "not enough memory");
    return LUA_ERRMEM;
  }
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  int st = lua_pcall(L, 1, LUA_MULTRET, 0);
  *nres = lua_gettop(L) - base;
  return st;
}

typedef struct bufarg {
  const char *p;
  size_t n;
} bufarg;

static int pushbuf_inner(lua_State *L) {
  bufarg *a = lua_touserdata(L, 1);
  lua_pushlstring(L, a->p, a->n);
  return 1;
}

void crt_io_pushbuf(lua_State *L, char *buf, size_t len) {
  bufarg a = {buf ? buf : "", len};
  int n;
  int st = crt_io_pcall(L, pushbuf_inner, &a, &n);
  free(buf);
  if (st != LUA_OK)
    lua_error(L);
}

void crt_io_ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
      !(sa.sa_flags & SA_SIGINFO)) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

/* ---- boxed objects ---------------------------------------------------------- */

int crt_io_close_method(lua_State *L, const char *mt, const char *tname, const char *fname,
                        void (*close)(void *obj)) {
  void *obj = crt_checkptr(L, 1, mt, tname, fname);
  if (obj)
    close(obj);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- registration --------------------------------------------------------- */

void crt_io_newlib(lua_State *L, const char *name, const luaL_Reg *funcs, crt_runtime *rt,
                   crt_io *io) {
  int n = 0;
  while (funcs[n].name)
    n++;
  lua_createtable(L, 0, n);
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, io);
  luaL_setfuncs(L, funcs, 2);
  lua_setfield(L, -2, name);
}

/* ---- addresses ------------------------------------------------------------ */

void crt_io_addr_parts(const struct sockaddr *sa, char *host, size_t size, int *port) {
  host[0] = '\0';
  *port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, host, size);
    *port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, host, size);
    *port = ntohs(in6->sin6_port);
  }
}

void crt_io_format_addr(const struct sockaddr *sa, char *out, size_t size) {
  char host[INET6_ADDRSTRLEN];
  int port;
  crt_io_addr_parts(sa, host, sizeof host, &port);
  if (sa->sa_family == AF_INET6)
    snprintf(out, size, "[%s]:%d", host, port);
  else
    snprintf(out, size, "%s:%d", host, port);
}
