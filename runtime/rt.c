/*
 * rt.c - the runtime object: creating it on a Lua state (crt_rt_new),
 * loading and starting the main task, driving the loop (crt_step), deadlock
 * detection, cross-thread posts, logging, shutdown (with the check that the
 * loop closed) and closing it. The Lua face (the crt table, crt_open's
 * state, module mode) is assembled by bindings/crt.c on top of this.
 *
 * Loop thread only (crt_rt_post: any thread). The runtime is found from Lua
 * through a registry entry.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "rt_impl.h"
#include "alloc.h"
#include "chan.h"
#include "scheduler.h"

static const char rt_key = 'R';

void crt_config_init(crt_config *config) {
  memset(config, 0, sizeof *config);
  config->set_global = 1;
}

crt_runtime *crt_rt_get(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  crt_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

/* ---- errors and logging ------------------------------------------------- */

void crt_rt_set_error(crt_runtime *rt, const char *msg) {
  char *copy = strdup(msg ? msg : "");
  if (!copy)
    return;
  free(rt->error);
  rt->error = copy;
}

void crt_rt_log(crt_runtime *rt, crt_log_level level, const char *msg) {
  if (level == CRT_LOG_ERROR)
    crt_rt_set_error(rt, msg);
  if (rt->cfg.log) {
    rt->cfg.log(rt->cfg.log_ud, level, msg ? msg : "(no message)");
  } else {
    fflush(stdout);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
  }
}

/* ---- named access (rt.h) ------------------------------------------------ */

uv_loop_t *crt_rt_loop(crt_runtime *rt) { return &rt->loop; }
const crt_config *crt_rt_config(crt_runtime *rt) { return &rt->cfg; }
int crt_rt_is_closing(crt_runtime *rt) { return rt->closing; }
int crt_rt_is_exiting(crt_runtime *rt) { return rt->exiting; }
int crt_rt_is_draining(crt_runtime *rt) { return rt->draining; }
int crt_rt_owns_state(crt_runtime *rt) { return rt->owns_state; }
int crt_rt_nreported(crt_runtime *rt) { return rt->nreported; }
int crt_rt_exit_status(crt_runtime *rt) { return rt->exit_code; }
void crt_rt_keepalive(crt_runtime *rt, int delta) { rt->nkeepalive += (size_t)(ptrdiff_t)delta; }

void crt_rt_request_exit(crt_runtime *rt, int code) {
  rt->exit_code = code;
  rt->exiting = 1;
}

void crt_rt_report(crt_runtime *rt, const char *msg) {
  crt_rt_log(rt, CRT_LOG_ERROR, msg);
  rt->nreported++;
}

void crt_rt_get_stats(crt_runtime *rt, crt_rt_stats *out) {
  out->tasks = rt->nalive;
  out->ready = rt->nready;
  out->timers = crt_timers_count(rt);
  out->keepalive = rt->nkeepalive;
}

/* ---- cross-thread posts ------------------------------------------------ */

static void on_async(uv_async_t *h) {
  crt_runtime *rt = h->data;
  pthread_mutex_lock(&rt->post_mu);
  crt_post *p = rt->post_head;
  rt->post_head = rt->post_tail = NULL;
  pthread_mutex_unlock(&rt->post_mu);
  while (p) {
    crt_post *next = p->next;
    p->next = NULL;
    p->fn(p);
    p = next;
  }
}

void crt_rt_post(crt_runtime *rt, crt_post *p) {
  p->next = NULL;
  pthread_mutex_lock(&rt->post_mu);
  int was_empty = rt->post_head == NULL;
  if (rt->post_tail)
    rt->post_tail->next = p;
  else
    rt->post_head = p;
  rt->post_tail = p;
  pthread_mutex_unlock(&rt->post_mu);
  if (was_empty)
    uv_async_send(&rt->async);
}

void crt_rt_hold(crt_runtime *rt, int delta) {
  int before = rt->nhold;
  rt->nhold += delta;
  if (before == 0 && rt->nhold > 0)
    uv_ref((uv_handle_t *)&rt->async);
  else if (before > 0 && rt->nhold == 0)
    uv_unref((uv_handle_t *)&rt->async);
}

int crt_rt_on_loop_thread(crt_runtime *rt) { return pthread_equal(rt->thread, pthread_self()); }

int crt_rt_on_close(crt_runtime *rt, void (*fn)(void *ud), void *ud) {
  crt_close_hook *hooks = realloc(rt->hooks, (size_t)(rt->nhooks + 1) * sizeof *hooks);
  if (!hooks)
    return -1;
  rt->hooks = hooks;
  hooks[rt->nhooks].fn = fn;
  hooks[rt->nhooks].ud = ud;
  rt->nhooks++;
  return 0;
}

static void on_prepare(uv_prepare_t *h) { crt_sched_drain(h->data); }
static void on_check(uv_check_t *h) { crt_sched_drain(h->data); }

/* ---- opening --------------------------------------------------------- */

crt_runtime *crt_rt_new(lua_State *L, const crt_config *config, int owns_state) {
  /* The registry entry first, while nothing needs freeing: setting it may
   * raise a memory error; replacing its value below cannot. */
  lua_pushboolean(L, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
  crt_runtime *rt = calloc(1, sizeof *rt);
  if (!rt)
    return NULL;
  if (config)
    rt->cfg = *config;
  else
    crt_config_init(&rt->cfg);
  if (uv_loop_init(&rt->loop) != 0) {
    free(rt);
    return NULL;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  rt->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  rt->owns_state = owns_state;
  rt->loop.data = rt;
  crt_timers_open(rt);
  uv_prepare_init(&rt->loop, &rt->prepare);
  uv_check_init(&rt->loop, &rt->check);
  uv_idle_init(&rt->loop, &rt->idle);
  rt->thread = pthread_self();
  pthread_mutex_init(&rt->post_mu, NULL);
  uv_async_init(&rt->loop, &rt->async, on_async);
  rt->async.data = rt;
  uv_unref((uv_handle_t *)&rt->async);
  rt->prepare.data = rt->check.data = rt->idle.data = rt;
  uv_prepare_start(&rt->prepare, on_prepare);
  uv_check_start(&rt->check, on_check);
  /* These run the ready queue; they must not keep the loop alive. */
  uv_unref((uv_handle_t *)&rt->prepare);
  uv_unref((uv_handle_t *)&rt->check);
  uv_unref((uv_handle_t *)&rt->idle);
  lua_pushlightuserdata(L, rt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
  return rt;
}

lua_State *crt_lua(crt_runtime *rt) { return rt->L; }
uv_loop_t *crt_loop(crt_runtime *rt) { return &rt->loop; }

/* ---- protected engine work ---------------------------------------------- */

/* The engine's own Lua work outside any task (routing task ends, reports,
 * shutdown) allocates, and on a memory error Lua raises: it runs under
 * lua_pcall so that the error is reported instead of aborting the host
 * through the panic handler. Such an error can leave a task half-ended, so
 * it ends the runtime (exit status 1), as an error in the main chunk does.
 * fn gets the runtime as a light userdata at index 1 and `arg` as an
 * integer at index 2. */
static int rt_pcall(crt_runtime *rt, lua_CFunction fn, int arg) {
  lua_State *L = rt->L;
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, rt);
  lua_pushinteger(L, arg);
  int st = lua_pcall(L, 2, 0, 0);
  if (st != LUA_OK) {
    rt->draining = 0;
    const char *msg = lua_tostring(L, -1);
    char buf[200];
    snprintf(buf, sizeof buf, "crt: %s", msg ? msg : "(error object is not a string)");
    crt_rt_report(rt, buf);
    lua_pop(L, 1);
    if (!rt->closing && !rt->exiting)
      crt_rt_request_exit(rt, 1);
  }
  return st;
}

static crt_runtime *rt_arg(lua_State *L) { return lua_touserdata(L, 1); }

/* ---- the main task -------------------------------------------------------- */

/* The function and nargs arguments at the top of rt->L become the main task. */
static int protected_start(lua_State *L) {
  crt_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  rt->main_task = crt_task_spawn(rt, L, lua_gettop(L) - 1);
  return 0;
}

int crt_start_main(crt_runtime *rt, int nargs) {
  lua_State *L = rt->L;
  if (rt->closing) {
    lua_pop(L, nargs + 1);
    return CRT_EFAILED;
  }
  lua_pushcfunction(L, protected_start);
  lua_insert(L, -(nargs + 2));
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, nargs + 2, 0, 0) != LUA_OK) {
    crt_rt_set_error(rt, lua_tostring(L, -1));
    lua_pop(L, 1);
    return CRT_ENOMEM; /* the only error crt_task_spawn raises */
  }
  return 0;
}

static int load_failed(crt_runtime *rt, int st) {
  crt_rt_set_error(rt, lua_tostring(rt->L, -1));
  lua_pop(rt->L, 1);
  return st == LUA_ERRFILE ? CRT_EFILE : st == LUA_ERRMEM ? CRT_ENOMEM : CRT_ESYNTAX;
}

/* luaL_loadfile itself pushes the chunk name unprotected. */
static int protected_loadfile(lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  lua_pushinteger(L, luaL_loadfile(L, path));
  return 2;
}

int crt_dofile(crt_runtime *rt, const char *path) {
  lua_State *L = rt->L;
  lua_pushcfunction(L, protected_loadfile);
  lua_pushlightuserdata(L, (void *)path);
  int st = lua_pcall(L, 1, 2, 0);
  if (st != LUA_OK)
    return load_failed(rt, st);
  st = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (st != LUA_OK)
    return load_failed(rt, st);
  return crt_start_main(rt, 0);
}

int crt_dostring(crt_runtime *rt, const char *chunk, const char *name) {
  int st = luaL_loadbuffer(rt->L, chunk, strlen(chunk), name ? name : "=(crt_dostring)");
  if (st != LUA_OK)
    return load_failed(rt, st);
  return crt_start_main(rt, 0);
}

/* ---- stepping ---------------------------------------------------------- */

static int pending(crt_runtime *rt) { return (int)(rt->nalive + rt->nkeepalive); }

static int protected_drain(lua_State *L) {
  crt_sched_drain(rt_arg(L));
  return 0;
}

static void drain(crt_runtime *rt) {
  if (rt->ready.head)
    rt_pcall(rt, protected_drain, 0);
}

/* After the last task ended: report the failed tasks nobody awaited (a full
 * collection first reports the unreachable ones through their finalizers). */
static int protected_reports(lua_State *L) {
  crt_runtime *rt = rt_arg(L);
  lua_gc(rt->L, LUA_GCCOLLECT);
  crt_sched_report_unobserved(rt);
  return 0;
}

static void final_reports(crt_runtime *rt) { rt_pcall(rt, protected_reports, 0); }

int crt_step(crt_runtime *rt, crt_step_mode mode) {
  if (rt->draining)
    return CRT_EFAILED; /* called from inside a task: refuse to nest */
  if (!rt->exiting) {
    switch (mode) {
    case CRT_NOWAIT:
      drain(rt);
      uv_run(&rt->loop, UV_RUN_NOWAIT);
      drain(rt);
      break;
    case CRT_ONCE:
      drain(rt);
      if (pending(rt) && !rt->exiting)
        uv_run(&rt->loop, rt->ready.head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
      drain(rt);
      break;
    case CRT_UNTIL_DONE:
      for (;;) {
        drain(rt);
        if (rt->exiting || !pending(rt))
          break;
        if (!rt->ready.head && !uv_loop_alive(&rt->loop)) {
          char msg[160];
          snprintf(msg, sizeof msg,
                   "crt: deadlock: %d task(s) wait on channels or on each other, and "
                   "nothing can wake them",
                   (int)rt->nalive);
          crt_rt_report(rt, msg);
          crt_rt_request_exit(rt, 1);
          return CRT_EDEADLOCK;
        }
        uv_run(&rt->loop, rt->ready.head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
      }
      break;
    }
  }
  /* Idle: report what failed unawaited, once per burst of work. A host
   * steps every frame with no task alive; when no task ended since the last
   * reports, no failure can be new, so the full collection is skipped. */
  if (!rt->exiting && !pending(rt) && rt->nended != rt->nended_at_reports) {
    rt->nended_at_reports = rt->nended;
    final_reports(rt);
  }
  if (rt->exiting)
    return CRT_EEXIT;
  if (rt->nreported != rt->ncollect_reports) {
    rt->ncollect_reports = rt->nreported;
    return CRT_EFAILED;
  }
  return pending(rt);
}

const char *crt_error(crt_runtime *rt) { return rt->error ? rt->error : ""; }

int crt_exit_code(crt_runtime *rt) {
  if (rt->exit_code)
    return rt->exit_code;
  return rt->nreported ? 1 : 0;
}

/* ---- closing ------------------------------------------------------------- */

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  crt_handle_close_fn *fn = h->data;
  if (fn && *fn)
    (*fn)(h); /* the binding closes it with its own callback (see rt.h) */
  else
    uv_close(h, NULL);
}

/* libuv handles left open after shutdown: a bug (of a binding or a host
 * that opened a handle on crt_rt_loop and did not close it). */
typedef struct leftover {
  int n;
  char types[200];
} leftover;

static void count_walk(uv_handle_t *h, void *arg) {
  leftover *lo = arg;
  size_t len = strlen(lo->types);
  if (lo->n < 8)
    snprintf(lo->types + len, sizeof lo->types - len, "%s%s", lo->n ? ", " : "",
             uv_handle_type_name(uv_handle_get_type(h)));
  lo->n++;
}

static void force_close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int protected_cancel(lua_State *L) {
  crt_sched_cancel_all(rt_arg(L), (int)lua_tointeger(L, 2));
  return 0;
}

/* Cancel every task under a protected call; a memory error (reported) is
 * retried a few times, each round getting further. */
static void cancel_all(crt_runtime *rt, int abandon) {
  for (int round = 0; round < 8; round++)
    if (rt_pcall(rt, protected_cancel, abandon) == LUA_OK)
      return;
}

int crt_rt_shutdown(crt_runtime *rt) {
  if (rt->closing)
    return crt_exit_code(rt);
  rt->closing = 1;
  int code = rt->exiting;
  rt->exiting = 0;
  cancel_all(rt, 0);
  /* Subsystems stop their threads and children; what they post back while
   * stopping is run, then the tasks they woke get a last chance to end, and
   * what is left is abandoned: no other thread can wake it any more. */
  while (rt->nhooks > 0) {
    crt_close_hook h = rt->hooks[--rt->nhooks];
    h.fn(h.ud);
  }
  free(rt->hooks);
  rt->hooks = NULL;
  on_async(&rt->async);
  cancel_all(rt, 1);
  rt->exiting = code;
  final_reports(rt);
  crt_timers_close(rt);
  rt->uvtimer.data = NULL;
  uv_close((uv_handle_t *)&rt->prepare, NULL);
  uv_close((uv_handle_t *)&rt->check, NULL);
  uv_close((uv_handle_t *)&rt->idle, NULL);
  rt->prepare.data = rt->check.data = rt->idle.data = NULL;
  uv_close((uv_handle_t *)&rt->async, NULL);
  rt->async.data = NULL;
  /* Handles of the bindings close themselves when their tasks are
   * cancelled; anything left over (a socket nobody closed) is closed here,
   * and its close callback frees it. */
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  uv_walk(&rt->loop, close_walk, NULL);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  int status = crt_exit_code(rt);
  if (uv_loop_close(&rt->loop) != 0) {
    leftover lo = {0, ""};
    uv_walk(&rt->loop, count_walk, &lo);
    char msg[320];
    snprintf(msg, sizeof msg, "crt: internal error: %d libuv handle(s) still open at close (%s%s)",
             lo.n, lo.types, lo.n > 8 ? ", ..." : "");
    crt_rt_log(rt, CRT_LOG_ERROR, msg);
    status = CRT_EX_SOFTWARE;
    /* Then close them without their owners' help, so that the loop's own
     * resources can still be freed. */
    uv_walk(&rt->loop, force_close_walk, NULL);
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt->loop);
  }
  return status;
}

/* Close rt and return the status a process should exit with, which the
 * shutdown itself can change (an error nobody awaited found while tasks and
 * children wind down; a libuv handle left open: 70). */
int crt_close(crt_runtime *rt) {
  if (!rt)
    return 0;
  lua_State *L = rt->L;
  int code = crt_rt_shutdown(rt);
  lua_pushnil(L); /* replacing a value: allocates nothing */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
  if (rt->owns_state)
    crt_arena_close_state(L);
  crt_chan_thread_cleanup();
  pthread_mutex_destroy(&rt->post_mu);
  free(rt->error);
  free(rt);
  return code;
}

const char *crt_strerror(int code) {
  switch (code) {
  case 0: return "no error";
  case CRT_EFAILED: return "a task failed and nobody awaited it";
  case CRT_EEXIT: return "the runtime was asked to exit";
  case CRT_ESYNTAX: return "the chunk has a syntax error";
  case CRT_EFILE: return "the file cannot be read";
  case CRT_EDEADLOCK: return "deadlock: every task waits and nothing can wake them";
  case CRT_ENOMEM: return "not enough memory";
  default: return "unknown error";
  }
}

/* ---- module mode ------------------------------------------------------- */

/* Run the loop until task t has finished (crt.run in module mode). Returns
 * 0, CRT_EEXIT after crt.exit, or CRT_EDEADLOCK. */
int crt_rt_run_until(crt_runtime *rt, crt_task *t) {
  for (;;) {
    crt_sched_drain(rt);
    if (rt->exiting)
      return CRT_EEXIT;
    if (!crt_task_alive(t))
      return 0;
    if (!rt->ready.head && !uv_loop_alive(&rt->loop))
      return CRT_EDEADLOCK;
    uv_run(&rt->loop, rt->ready.head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
  }
}
