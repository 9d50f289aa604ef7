/*
 * signal.c - crt.signal: run a function in a new task at each delivery of a
 * signal (on), or wait for one delivery (wait); and the default SIGINT
 * behaviour of the crt binary (end the script cleanly with status 130).
 *
 * Loop thread only. A watcher is a malloc'd struct around a uv_signal_t,
 * freed by the handle's close callback. Watchers of `on` are unref'd (they do
 * not keep crt alive: crt ends when no task is left) and stay installed
 * until handle:stop() or the end of the runtime, even when their handle
 * object is collected. They are wakers (io.h): ref'd, so that tasks waiting
 * on a channel a handler feeds are not taken for a deadlock. A watcher of
 * `wait` is ref'd since a task waits on it.
 *
 * The default SIGINT watcher exists only when the runtime owns its Lua state
 * (the crt binary, or a host using crt_open) and SIGINT had its default
 * disposition when crt started (a host's own handler, or SIGINT ignored by
 * the shell for a background job, is left alone). While any user watcher of
 * SIGINT is installed, the default one is stopped.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "io.h"
#include "util.h"
#include "rt.h"
#include "scheduler.h"

#define HANDLE_MT "crt.signal.handle"

typedef struct crt_sigwatch {
  crt_handle_close_fn close_fn; /* must stay first */
  uv_signal_t sig;
  crt_io *io;
  struct crt_sigwatch **box; /* on: the handle object, NULL once collected */
  int signum;
  int fnref;          /* on: the function; LUA_NOREF otherwise */
  crt_task *waiter;   /* wait: the waiting task */
  crt_io_waker waker; /* on: may wake tasks (see io.h) */
  int counted;        /* counted in io->sigint_users */
  int stopped;
} crt_sigwatch;

static crt_io *io_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(2)); }

/* ---- the default SIGINT watcher and its replacement ---------------------- */

static void default_cb(uv_signal_t *h, int signum) {
  crt_sigwatch *w = h->data;
  crt_runtime *rt = w->io->rt;
  (void)signum;
  if (crt_rt_is_exiting(rt) || crt_rt_is_closing(rt)) {
    /* A second interrupt while crt is already ending: stop waiting for the
     * cleanup and die of the signal, as a program without a handler does. */
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  crt_rt_request_exit(rt, 130);
  uv_stop(crt_rt_loop(rt));
}

static void sigint_user_add(crt_io *io) {
  if (io->sigint_users++ == 0 && io->sigint_default)
    uv_signal_stop(&io->sigint_default->sig);
}

static void sigint_user_remove(crt_io *io) {
  if (--io->sigint_users == 0 && io->sigint_default && !crt_rt_is_closing(io->rt) &&
      !uv_is_closing((uv_handle_t *)&io->sigint_default->sig))
    uv_signal_start(&io->sigint_default->sig, default_cb, SIGINT);
}

/* ---- watchers -------------------------------------------------------------- */

static void watch_close_cb(uv_handle_t *h) {
  crt_sigwatch *w = h->data;
  if (w->fnref != LUA_NOREF)
    luaL_unref(crt_lua(w->io->rt), LUA_REGISTRYINDEX, w->fnref);
  if (w->box)
    *w->box = NULL;
  if (w->io->sigint_default == w)
    w->io->sigint_default = NULL;
  free(w);
}

static void watch_stop(crt_sigwatch *w) {
  if (w->stopped)
    return;
  w->stopped = 1;
  if (w->counted) {
    w->counted = 0;
    sigint_user_remove(w->io);
  }
  crt_io_waker_remove(w->io, &w->waker);
  if (!uv_is_closing((uv_handle_t *)&w->sig))
    uv_close((uv_handle_t *)&w->sig, watch_close_cb);
}

static void watch_close_fn(uv_handle_t *h) {
  crt_sigwatch *w = h->data;
  if (w->waiter) {
    crt_task *t = w->waiter; /* cannot happen: tasks end before handles close */
    w->waiter = NULL;
    crt_task_wake(t, 0);
  }
  watch_stop(w);
}

/* A new watcher of signum (started with cb), or NULL with *err set. */
static crt_sigwatch *watch_new(crt_io *io, int signum, uv_signal_cb cb, int *err) {
  crt_sigwatch *w = calloc(1, sizeof *w);
  if (!w) {
    *err = UV_ENOMEM;
    return NULL;
  }
  w->close_fn = watch_close_fn;
  w->io = io;
  w->signum = signum;
  w->fnref = LUA_NOREF;
  int r = uv_signal_init(crt_rt_loop(io->rt), &w->sig);
  if (r < 0) {
    free(w);
    *err = r;
    return NULL;
  }
  w->sig.data = w;
  r = uv_signal_start(&w->sig, cb, signum);
  if (r < 0) {
    w->stopped = 1;
    uv_close((uv_handle_t *)&w->sig, watch_close_cb);
    *err = r;
    return NULL;
  }
  if (signum == SIGINT) {
    w->counted = 1;
    sigint_user_add(io);
  }
  return w;
}

static int check_catchable(lua_State *L, int arg, const char *fname) {
  int signum = crt_io_checksignal(L, arg, fname);
  if (signum == SIGKILL || signum == SIGSTOP)
    crt_argerror(L, fname, arg, "SIGKILL and SIGSTOP cannot be caught");
  return signum;
}

/* ---- crt.signal.on ---------------------------------------------------------- */

static int spawn_handler(lua_State *L) {
  crt_sigwatch *w = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->fnref);
  crt_io_pushsignal(L, w->signum);
  crt_task_spawn(w->io->rt, L, 1);
  return 0;
}

static void on_cb(uv_signal_t *h, int signum) {
  crt_sigwatch *w = h->data;
  crt_runtime *rt = w->io->rt;
  (void)signum;
  if (w->stopped || crt_rt_is_closing(rt) || crt_rt_is_exiting(rt))
    return;
  int n;
  if (crt_io_pcall(crt_lua(rt), spawn_handler, w, &n) != LUA_OK) {
    lua_pushfstring(crt_lua(rt), "crt.signal.on: cannot start the handler: %s",
                    lua_tostring(crt_lua(rt), -1));
    crt_rt_log(rt, CRT_LOG_WARN, lua_tostring(crt_lua(rt), -1));
    n++;
  }
  lua_pop(crt_lua(rt), n);
}

static int l_on(lua_State *L) {
  static const char fname[] = "crt.signal.on";
  int signum = check_catchable(L, 1, fname);
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return crt_typeerror(L, fname, 2, "function");
  crt_io *io = io_of(L);
  crt_sigwatch **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, HANDLE_MT);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int err;
  crt_sigwatch *w = watch_new(io, signum, on_cb, &err);
  if (!w) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return crt_pushfail(L, err, fname);
  }
  w->fnref = ref;
  crt_io_waker_add(io, &w->waker, (uv_handle_t *)&w->sig);
  *box = w;
  w->box = box;
  return 1;
}

static int h_stop(lua_State *L) {
  crt_sigwatch **box = luaL_testudata(L, 1, HANDLE_MT);
  if (!box)
    return crt_typeerror(L, "handle:stop", 1, "signal handle");
  int was = *box && !(*box)->stopped;
  if (*box)
    watch_stop(*box);
  lua_pushboolean(L, was);
  return 1;
}

static int h_gc(lua_State *L) {
  crt_sigwatch **box = lua_touserdata(L, 1);
  if (*box) {
    (*box)->box = NULL; /* the handler stays installed (see the top) */
    *box = NULL;
  }
  return 0;
}

static int h_tostring(lua_State *L) {
  crt_sigwatch **box = lua_touserdata(L, 1);
  if (*box && !(*box)->stopped) {
    const char *name = crt_io_signame((*box)->signum);
    lua_pushfstring(L, "crt.signal.handle: %p (%s)", (void *)box, name ? name : "?");
  } else {
    lua_pushfstring(L, "crt.signal.handle: %p (stopped)", (void *)box);
  }
  return 1;
}

/* ---- crt.signal.wait -------------------------------------------------------- */

static void wait_cb(uv_signal_t *h, int signum) {
  crt_sigwatch *w = h->data;
  (void)signum;
  if (w->waiter) {
    crt_task *t = w->waiter;
    w->waiter = NULL;
    crt_task_wake(t, 0);
  }
  watch_stop(w);
}

static void wait_unpark(crt_task *t, void *data) {
  crt_sigwatch *w = data;
  (void)t;
  w->waiter = NULL;
  watch_stop(w);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  crt_io_pushsignal(L, (int)ctx);
  return 1;
}

static int l_wait(lua_State *L) {
  static const char fname[] = "crt.signal.wait";
  int signum = check_catchable(L, 1, fname);
  crt_task *t = crt_task_require(L, fname);
  int err;
  crt_sigwatch *w = watch_new(io_of(L), signum, wait_cb, &err);
  if (!w)
    return crt_pushfail(L, err, fname);
  w->waiter = t;
  return crt_task_park(L, t, wait_unpark, w, wait_k, signum);
}

/* ---- registration ---------------------------------------------------------- */

static void install_default(crt_io *io) {
  struct sigaction sa;
  if (!crt_rt_owns_state(io->rt) || io->sigint_default)
    return;
  if (sigaction(SIGINT, NULL, &sa) != 0 || (sa.sa_flags & SA_SIGINFO) || sa.sa_handler != SIG_DFL)
    return;
  crt_sigwatch *w = calloc(1, sizeof *w);
  if (!w)
    return;
  w->close_fn = watch_close_fn;
  w->io = io;
  w->signum = SIGINT;
  w->fnref = LUA_NOREF;
  if (uv_signal_init(crt_rt_loop(io->rt), &w->sig) < 0) {
    free(w);
    return;
  }
  w->sig.data = w;
  uv_unref((uv_handle_t *)&w->sig);
  io->sigint_default = w;
  if (io->sigint_users == 0)
    uv_signal_start(&w->sig, default_cb, SIGINT);
}

void crt_open_signal(lua_State *L, crt_runtime *rt) {
  crt_io *io = crt_io_get(L, rt);
  if (luaL_newmetatable(L, HANDLE_MT)) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, h_stop);
    lua_setfield(L, -2, "stop");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, h_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, h_stop);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, h_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  install_default(io);
  static const luaL_Reg funcs[] = {{"on", l_on}, {"wait", l_wait}, {NULL, NULL}};
  lua_createtable(L, 0, 2);
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, io);
  luaL_setfuncs(L, funcs, 2);
  lua_setfield(L, -2, "signal");
}
