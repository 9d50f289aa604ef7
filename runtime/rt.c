/*
 * rt.c - the runtime object: opening and closing it, driving the loop
 * (crt_step), deadlock detection, logging and the error helpers shared by
 * the bindings.
 *
 * Loop thread only. The runtime is found from Lua through a registry entry;
 * in module mode (require "crt" from a stock lua5.4) a sentinel userdata in
 * the registry closes it when the state closes.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "rt.h"
#include "alloc.h"
#include "chan.h"
#include "scheduler.h"

static const char rt_key = 'R';

int crt_open_lib(lua_State *L, crt_runtime *rt); /* bindings/crt.c */

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
    rt->cfg.log(rt->cfg.log_ud, level, msg);
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

/* ---- opening --------------------------------------------------------- */

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

/* Attach a fresh runtime to L (which has the standard library) and push the
 * crt table. */
static crt_runtime *attach(lua_State *L, const crt_config *config, int owns_state) {
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
  crt_open_lib(L, rt);
  return rt;
}

crt_runtime *crt_open(const crt_config *config) {
  lua_State *L = crt_arena_newstate();
  if (!L)
    return NULL;
  luaL_openlibs(L);
  crt_runtime *rt = attach(L, config, 1);
  if (!rt) {
    crt_arena_close_state(L);
    return NULL;
  }
  /* The crt table is at the top: make it require "crt" and, for scripts, the
   * global crt. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "crt");
  lua_pop(L, 1);
  if (rt->cfg.set_global)
    lua_setglobal(L, "crt");
  else
    lua_pop(L, 1);
  return rt;
}

lua_State *crt_lua(crt_runtime *rt) { return rt->L; }
uv_loop_t *crt_loop(crt_runtime *rt) { return &rt->loop; }

/* ---- the main task -------------------------------------------------------- */

/* The function and nargs arguments at the top of rt->L become the main task. */
int crt_start_main(crt_runtime *rt, int nargs) {
  if (rt->closing) {
    lua_pop(rt->L, nargs + 1);
    return CRT_EFAILED;
  }
  crt_task *t = crt_task_spawn(rt, rt->L, nargs);
  rt->main_task = t;
  lua_pop(rt->L, 1);
  return 0;
}

static int load_failed(crt_runtime *rt, int st) {
  crt_rt_set_error(rt, lua_tostring(rt->L, -1));
  lua_pop(rt->L, 1);
  return st == LUA_ERRFILE ? CRT_EFILE : CRT_ESYNTAX;
}

int crt_dofile(crt_runtime *rt, const char *path) {
  int st = luaL_loadfile(rt->L, path);
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

/* Runs the scheduler under a protected call: the scheduler itself raises
 * only on memory errors, and those must not abort a host. */
static int protected_drain(lua_State *L) {
  crt_sched_drain(lua_touserdata(L, 1));
  return 0;
}

static void drain(crt_runtime *rt) {
  if (!rt->ready_head)
    return;
  lua_State *L = rt->L;
  lua_pushcfunction(L, protected_drain);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    crt_rt_log(rt, CRT_LOG_ERROR, lua_tostring(L, -1));
    lua_pop(L, 1);
    rt->draining = 0;
  }
}

/* After the last task ended: report the failed tasks nobody awaited (a full
 * collection first reports the unreachable ones through their finalizers). */
static void final_reports(crt_runtime *rt) {
  lua_gc(rt->L, LUA_GCCOLLECT);
  crt_sched_report_unobserved(rt);
}

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
        uv_run(&rt->loop, rt->ready_head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
      drain(rt);
      break;
    case CRT_UNTIL_DONE:
      for (;;) {
        drain(rt);
        if (rt->exiting || !pending(rt))
          break;
        if (!rt->ready_head && !uv_loop_alive(&rt->loop)) {
          char msg[160];
          snprintf(msg, sizeof msg,
                   "crt: deadlock: %d task(s) wait on channels or on each other, and "
                   "nothing can wake them",
                   (int)rt->nalive);
          crt_rt_log(rt, CRT_LOG_ERROR, msg);
          rt->nreported++;
          rt->exiting = 1;
          rt->exit_code = 1;
          return CRT_EDEADLOCK;
        }
        uv_run(&rt->loop, rt->ready_head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
      }
      break;
    }
  }
  if (!rt->exiting && !pending(rt))
    final_reports(rt);
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

/* Everything but the Lua state: used by crt_close and by the module-mode
 * sentinel's finalizer. */
static void detach(crt_runtime *rt) {
  rt->closing = 1;
  int code = rt->exiting;
  rt->exiting = 0;
  crt_sched_cancel_all(rt, 0);
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
  crt_sched_cancel_all(rt, 1);
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
  uv_loop_close(&rt->loop);
}

/* Close rt and return the status a process should exit with, which the
 * shutdown itself can change (an error nobody awaited found while tasks and
 * children wind down). */
int crt_close(crt_runtime *rt) {
  if (!rt)
    return 0;
  lua_State *L = rt->L;
  detach(rt);
  int code = crt_exit_code(rt);
  lua_pushnil(L);
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
  default: return "unknown error";
  }
}

/* ---- module mode ------------------------------------------------------- */

static int sentinel_gc(lua_State *L) {
  crt_runtime **box = lua_touserdata(L, 1);
  if (*box) {
    crt_runtime *rt = *box;
    *box = NULL;
    crt_close(rt);
  }
  return 0;
}

/* require "crt" from a stock Lua: attach a runtime to this state (once). */
int crt_rt_open_module(lua_State *L) {
  crt_runtime *rt = crt_rt_get(L);
  if (rt) {
    lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
    return 1;
  }
  crt_runtime **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "crt.sentinel");
  rt = attach(L, NULL, 0);
  if (!rt)
    return luaL_error(L, "crt: cannot open the runtime");
  lua_getfield(L, LUA_REGISTRYINDEX, "crt.sentinel");
  *(crt_runtime **)lua_touserdata(L, -1) = rt;
  lua_pop(L, 1);
  return 1;
}

/* Run the loop until task t has finished (crt.run in module mode). Returns
 * 0, CRT_EEXIT after crt.exit, or CRT_EDEADLOCK. */
int crt_rt_run_until(crt_runtime *rt, crt_task *t) {
  for (;;) {
    crt_sched_drain(rt);
    if (rt->exiting)
      return CRT_EEXIT;
    if (!crt_task_alive(t))
      return 0;
    if (!rt->ready_head && !uv_loop_alive(&rt->loop))
      return CRT_EDEADLOCK;
    uv_run(&rt->loop, rt->ready_head ? UV_RUN_NOWAIT : UV_RUN_ONCE);
  }
}
