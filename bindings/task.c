/*
 * task.c - the Lua API of tasks and timers: crt.spawn, crt.sleep, crt.yield,
 * crt.now, crt.after, crt.every, crt.exit, crt.run, crt.stats, crt.Cancelled
 * and the methods of task and timer objects.
 *
 * Loop thread only (the state that owns the runtime). Every function finds
 * the runtime in its first upvalue. The scheduler (runtime/scheduler.c)
 * raises nothing: the errors of these calls are raised here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "chan.h"
#include "lib.h"
#include "util.h"
#include "rt.h"
#include "scheduler.h"

#define TIMER_MT "crt.timer"

static crt_runtime *rt_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static crt_task *check_task(lua_State *L, int idx, const char *fname) {
  return crt_checkbox(L, idx, CRT_TASK_MT, "task", fname);
}

static int l_spawn(lua_State *L) {
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, "crt.spawn", 1, "function");
  crt_runtime *rt = rt_of(L);
  if (crt_rt_is_closing(rt))
    return crt_errorf(L, "crt.spawn", "the runtime is closing");
  crt_task_spawn(rt, L, lua_gettop(L) - 1);
  return 1;
}

static double check_seconds(lua_State *L, int arg, const char *fname) {
  /* Strictly numbers: a numeric string is almost always a mistake here. */
  if (lua_type(L, arg) != LUA_TNUMBER)
    crt_typeerror(L, fname, arg, "number");
  double s = lua_tonumber(L, arg);
  if (s != s)
    crt_argerror(L, fname, arg, "number expected, got nan");
  return s;
}

static int l_sleep(lua_State *L) {
  double s = check_seconds(L, 1, "crt.sleep");
  crt_task *t = crt_task_require(L, "crt.sleep");
  if (s <= 0)
    return crt_task_yield(L, t);
  return crt_task_sleep(L, t, s);
}

static int l_yield(lua_State *L) {
  crt_task *t = crt_task_require(L, "crt.yield");
  return crt_task_yield(L, t);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* ---- task methods -------------------------------------------------------- */

/* The outcome of a finished task: its results, or its error re-raised. */
static int outcome(lua_State *L, crt_task *t) {
  int n = crt_task_push_outcome(L, t);
  if (n == CRT_TASK_RAISE)
    return lua_error(L);
  if (n == CRT_TASK_NOSTACK)
    return luaL_error(L, "stack overflow (too many results to await)");
  return n;
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return outcome(L, (crt_task *)ctx);
}

static int await_task(lua_State *L, crt_task *target) {
  if (!crt_task_alive(target))
    return outcome(L, target);
  crt_task *self = crt_task_require(L, "task:await");
  if (self == target)
    return crt_errorf(L, "task:await", "a task cannot await itself");
  return crt_task_await(L, self, target, await_k);
}

static int t_await(lua_State *L) { return await_task(L, check_task(L, 1, "task:await")); }

static int t_cancel(lua_State *L) {
  crt_task *t = check_task(L, 1, "task:cancel");
  int alive = crt_task_alive(t);
  crt_task_cancel(t);
  lua_pushboolean(L, alive);
  return 1;
}

static const char *const status_names[] = {"pending", "running", "done", "failed", "cancelled"};

static int t_status(lua_State *L) {
  crt_task *t = check_task(L, 1, "task:status");
  lua_pushstring(L, status_names[crt_task_status(t)]);
  return 1;
}

static int t_done(lua_State *L) {
  crt_task *t = check_task(L, 1, "task:done");
  lua_pushboolean(L, !crt_task_alive(t));
  return 1;
}

static int t_tostring(lua_State *L) {
  crt_task *t = check_task(L, 1, "task:__tostring");
  lua_pushfstring(L, "crt.task: %p (%s)", (void *)t, status_names[crt_task_status(t)]);
  return 1;
}

/* crt._notify(task, channel, tag): offer tag to channel when task ends. */
static int l_notify(lua_State *L) {
  crt_task *t = check_task(L, 1, "crt._notify");
  crt_chan *ch = crt_chan_test(L, 2);
  if (!ch)
    return crt_typeerror(L, "crt._notify", 2, "channel");
  lua_Integer tag = luaL_checkinteger(L, 3);
  if (crt_task_notify(L, t, ch, tag) < 0)
    return luaL_error(L, "not enough memory");
  return 0;
}

/* crt._observe(task): its error was handled (by crt.group). */
static int l_observe(lua_State *L) {
  crt_task_observe(check_task(L, 1, "crt._observe"));
  return 0;
}

static int l_istask(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, CRT_TASK_MT) != NULL);
  return 1;
}

/* ---- crt.after / crt.every -------------------------------------------------- */

typedef struct ltimer {
  crt_timer tm;
  crt_runtime *rt;
  double interval; /* 0 for after */
  int selfref;     /* pin while armed */
  int stopped;
} ltimer;

static void ltimer_unpin(ltimer *lt) {
  if (lt->selfref != LUA_NOREF) {
    luaL_unref(crt_lua(lt->rt), LUA_REGISTRYINDEX, lt->selfref);
    lt->selfref = LUA_NOREF;
    crt_rt_keepalive(lt->rt, -1);
  }
}

static int ltimer_run_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 0;
}

/* The body of the task a firing starts: fn runs unless stop() came first.
 * lua_callk lets fn wait like any task. */
static int ltimer_run(lua_State *L) {
  ltimer *lt = lua_touserdata(L, lua_upvalueindex(1));
  if (lt->stopped)
    return 0;
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_callk(L, 0, 0, 0, ltimer_run_k);
  return 0;
}

/* Start the task of one firing (protected: it allocates). The timer object
 * is at index 1. */
static int ltimer_spawn(lua_State *L) {
  ltimer *lt = lua_touserdata(L, 1);
  lua_pushcclosure(L, ltimer_run, 1);
  crt_task_spawn(lt->rt, L, 0);
  return 0;
}

static void ltimer_fire(crt_timer *tm) {
  ltimer *lt = (ltimer *)tm;
  crt_runtime *rt = lt->rt;
  lua_State *L = crt_lua(rt);
  lua_pushcfunction(L, ltimer_spawn);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->selfref); /* kept alive on the stack */
  if (lt->interval > 0) {
    /* Re-arm from the due time, not from now, so `every` does not drift;
     * when the loop fell behind, the next firing is one interval away. */
    uint64_t now = uv_hrtime();
    uint64_t step = (uint64_t)ceil(lt->interval * 1e9);
    uint64_t due = tm->due + step;
    double s = due > now ? (double)(due - now) / 1e9 : lt->interval;
    crt_timer_start(rt, tm, s);
  } else {
    ltimer_unpin(lt);
  }
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* out of memory: this firing is lost */
    crt_rt_report(rt, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int new_timer(lua_State *L, const char *fname, int repeat) {
  double s = check_seconds(L, 1, fname);
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return crt_typeerror(L, fname, 2, "function");
  if (repeat && !(s > 0))
    return crt_argerror(L, fname, 1, "interval must be > 0");
  crt_runtime *rt = rt_of(L);
  ltimer *lt = lua_newuserdatauv(L, sizeof *lt, 1);
  crt_timer_init(&lt->tm, ltimer_fire);
  lt->rt = rt;
  lt->interval = repeat ? s : 0;
  lt->stopped = 0;
  luaL_setmetatable(L, TIMER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  lt->selfref = luaL_ref(L, LUA_REGISTRYINDEX);
  crt_rt_keepalive(rt, 1);
  crt_timer_start(rt, &lt->tm, s);
  return 1;
}

static int l_after(lua_State *L) { return new_timer(L, "crt.after", 0); }
static int l_every(lua_State *L) { return new_timer(L, "crt.every", 1); }

static int timer_stop(lua_State *L) {
  ltimer *lt = crt_checkbox(L, 1, TIMER_MT, "timer", "timer:stop");
  int was = !lt->stopped && (crt_timer_armed(&lt->tm) || lt->selfref != LUA_NOREF);
  lt->stopped = 1;
  if (!crt_rt_is_closing(lt->rt))
    crt_timer_stop(lt->rt, &lt->tm);
  ltimer_unpin(lt);
  lua_pushboolean(L, was);
  return 1;
}

static int timer_gc(lua_State *L) {
  ltimer *lt = lua_touserdata(L, 1);
  lt->stopped = 1;
  return 0;
}

/* ---- exit, run, stats -------------------------------------------------- */

static int l_exit(lua_State *L) {
  crt_runtime *rt = rt_of(L);
  /* No code: 0, or 1 when an error nobody awaited was reported. */
  int code = crt_rt_nreported(rt) ? 1 : 0;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? 0 : 1;
  else if (!lua_isnoneornil(L, 1)) {
    int isint;
    lua_Integer n = lua_tointegerx(L, 1, &isint);
    if (!isint)
      return crt_typeerror(L, "crt.exit", 1, "integer");
    code = (int)n;
  }
  crt_rt_request_exit(rt, code);
  crt_task *t = crt_task_current(L);
  if (t) {
    /* The task stops here; crt_step returns and the host closes the runtime,
     * which cancels the remaining tasks (this one included). */
    return crt_task_park(L, t, NULL, NULL, NULL, 0);
  }
  if (!crt_rt_owns_state(rt) && !crt_rt_is_draining(rt)) {
    /* Module mode, outside any task: like os.exit. */
    fflush(NULL);
    exit(code);
  }
  return 0;
}

static int l_run(lua_State *L) {
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, "crt.run", 1, "function");
  crt_runtime *rt = rt_of(L);
  if (crt_task_current(L)) {
    /* Inside a task (a script run by crt): run fn as a task and await it. */
    crt_task *t = crt_task_spawn(rt, L, lua_gettop(L) - 1);
    return await_task(L, t);
  }
  if (crt_rt_is_draining(rt))
    return crt_errorf(L, "crt.run", "cannot run the loop from inside a plain coroutine of a task");
  crt_task *t = crt_task_spawn(rt, L, lua_gettop(L) - 1);
  int top = lua_gettop(L);
  int rc = crt_rt_run_until(rt, t);
  lua_settop(L, top);
  if (rc == CRT_EEXIT) {
    fflush(NULL);
    exit(crt_rt_exit_status(rt));
  }
  if (rc == CRT_EDEADLOCK)
    return crt_errorf(L, "crt.run",
                      "deadlock: every task waits on a channel or on another "
                      "task, and nothing can wake them");
  return outcome(L, t);
}

static int l_stats(lua_State *L) {
  crt_rt_stats st;
  crt_rt_get_stats(rt_of(L), &st);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)st.tasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, (lua_Integer)st.ready);
  lua_setfield(L, -2, "ready");
  lua_pushinteger(L, (lua_Integer)st.timers);
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, (lua_Integer)st.keepalive);
  lua_setfield(L, -2, "keepalive");
  return 1;
}

/* The task object's finalizer (the engine reports an unawaited failure). */
static int t_gc(lua_State *L) {
  crt_task_finalize(L, lua_touserdata(L, 1));
  return 0;
}

int crt_open_task(lua_State *L) {
  crt_runtime *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  static const luaL_Reg task_methods[] = {{"await", t_await},
                                          {"cancel", t_cancel},
                                          {"status", t_status},
                                          {"done", t_done},
                                          {NULL, NULL}};
  static const luaL_Reg task_meta[] = {{"__tostring", t_tostring}, {"__gc", t_gc}, {NULL, NULL}};
  crt_newclass(L, CRT_TASK_MT, task_methods, task_meta, 0);
  static const luaL_Reg timer_methods[] = {{"stop", timer_stop}, {NULL, NULL}};
  static const luaL_Reg timer_meta[] = {{"__gc", timer_gc}, {NULL, NULL}};
  crt_newclass(L, TIMER_MT, timer_methods, timer_meta, 0);

  /* crt.Cancelled: a unique value, compared with ==. */
  crt_new_cancelled(L);
  lua_pushvalue(L, -1);
  crt_sched_set_cancelled(L);
  lua_setfield(L, -2, "Cancelled");

  static const luaL_Reg funcs[] = {
      {"spawn", l_spawn}, {"sleep", l_sleep},    {"yield", l_yield},      {"now", l_now},
      {"after", l_after}, {"every", l_every},    {"exit", l_exit},        {"run", l_run},
      {"stats", l_stats}, {"_notify", l_notify}, {"_observe", l_observe}, {"_istask", l_istask},
      {NULL, NULL}};
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, funcs, 1);
  return 0;
}
