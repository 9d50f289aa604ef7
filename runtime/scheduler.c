/*
 * scheduler.c - the task scheduler: coroutines resumed from an intrusive ready
 * queue, parked on any wait source, woken, cancelled, and finished with their
 * results or their error routed to whoever awaits them.
 *
 * Loop thread only. Invariants:
 * - A task is pinned (registry ref) from spawn until it finishes, so the GC
 *   never frees a task that a queue, a timer or a libuv request points at.
 * - A parked task has `unpark` set (possibly to NULL hook with parked = 1)
 *   and is in no ready queue; a queued task is not parked. crt_task_wake and
 *   cancellation move a task from parked to queued exactly once.
 * - Cancellation of a parked task detaches it from its wait source (unpark
 *   hook) and resumes it so that the waiting call raises crt.Cancelled.
 *   A cancel that arrives while the task runs or is already queued is kept
 *   (cancel_req) and delivered at its next wait point, so no woken result
 *   (a received channel value, say) is ever dropped.
 * - One function, resume(), runs tasks and routes their ends: results stay
 *   on the dead coroutine's stack for awaiters; an error gets its traceback
 *   and goes to awaiters, or to the unawaited-error report.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "chan.h"
#include "list.h"
#include "rt_impl.h"
#include "scheduler.h"

/* A channel told when a task finishes (crt.all, crt.race, crt.group). */
typedef struct notify {
  struct notify *next;
  crt_chan *ch;
  lua_Integer tag;
} notify;

struct crt_task {
  crt_runtime *rt;
  lua_State *co;
  crt_snode rnode; /* rt->ready */
  crt_timer timer; /* crt.sleep */
  crt_unpark_fn unpark;
  void *unpark_data;
  lua_KFunction k;
  lua_KContext kctx;
  crt_task *awaiters;   /* tasks parked awaiting this one */
  crt_task *await_next; /* link in the awaited task's list */
  crt_link alink;       /* rt->alive while alive; rt->unobserved after */
  notify *notify;
  int ref;  /* registry pin while alive, LUA_NOREF after */
  int oref; /* a future's outcome table in the registry (see crt_task_future) */
  /* Values pushed on co for the next resume; once DONE, the results at the
   * top of co; once FAILED or CANCELLED, 2 (error, traceback). */
  int nres;
  /* Kept small: a parked task should cost little more than its coroutine. */
  unsigned status : 3;
  unsigned parked : 1;       /* waiting for wake or unpark */
  unsigned queued : 1;       /* in the ready queue */
  unsigned cancel_req : 1;   /* deliver crt.Cancelled at the next wait point */
  unsigned cancel_now : 1;   /* deliver crt.Cancelled when resumed */
  unsigned observed : 1;     /* its end was awaited (or it cannot fail) */
  unsigned unobs : 1;        /* in the unobserved-failure list */
  unsigned timed_out : 1;    /* the deadline fired before a wake */
  unsigned deferred : 1;     /* unpark found the wait already completing */
  unsigned future : 1;       /* no coroutine: C code completes it */
  unsigned cancel_asked : 1; /* task:cancel() (or shutdown) asked for it */
};

/* The task being resumed on this thread (tasks of nested runtimes on the same
 * thread save and restore it). */
static _Thread_local crt_task *running;

static const char cancelled_key = 'C';

/* ---- small helpers ---------------------------------------------------- */

static void push_cancelled(lua_State *L) { lua_rawgetp(L, LUA_REGISTRYINDEX, &cancelled_key); }

int crt_sched_is_cancelled(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  push_cancelled(L);
  int eq = lua_rawequal(L, idx, -1);
  lua_pop(L, 1);
  return eq;
}

crt_task *crt_task_current(lua_State *L) {
  crt_task *t = running;
  return (t && t->co == L) ? t : NULL;
}

lua_State *crt_task_co(crt_task *t) { return t->co; }
crt_runtime *crt_task_rt(crt_task *t) { return t->rt; }

static void on_idle(uv_idle_t *h) { crt_sched_drain(h->data); }

static void ready_push(crt_runtime *rt, crt_task *t) {
  t->queued = 1;
  crt_fifo_push(&rt->ready, &t->rnode);
  rt->nready++;
  /* Outside a drain, make sure the loop does not block in poll before the
   * prepare/check callbacks run this task. */
  if (!rt->draining && !uv_is_active((uv_handle_t *)&rt->idle))
    uv_idle_start(&rt->idle, on_idle);
}

static crt_task *ready_pop(crt_runtime *rt) {
  crt_snode *n = crt_fifo_pop(&rt->ready);
  if (!n)
    return NULL;
  crt_task *t = crt_container_of(n, crt_task, rnode);
  rt->nready--;
  t->queued = 0;
  return t;
}

/* ---- parking and waking ------------------------------------------------ */

static int park_k(lua_State *L, int status, lua_KContext ctx) {
  crt_task *t = (crt_task *)ctx;
  (void)status;
  if (t->cancel_now) {
    t->cancel_now = 0;
    push_cancelled(L);
    return lua_error(L); /* layers: unwind (park protocol: crt.Cancelled into the task) */
  }
  lua_KFunction k = t->k;
  t->k = NULL;
  if (k)
    return k(L, LUA_YIELD, t->kctx);
  return t->nres; /* the values the waker pushed (see crt_task_wake) */
}

int crt_task_park(lua_State *L, crt_task *t, crt_unpark_fn unpark, void *data, lua_KFunction k,
                  lua_KContext ctx) {
  if (t->cancel_req) {
    /* A cancel that came while the task ran: deliver it here, after the
     * caller's wait source has been told to forget the task. */
    t->cancel_req = 0;
    if (unpark)
      unpark(t, data);
    push_cancelled(L);
    return lua_error(L); /* layers: unwind (park protocol: crt.Cancelled into the task) */
  }
  t->parked = 1;
  t->unpark = unpark;
  t->unpark_data = data;
  t->k = k;
  t->kctx = ctx;
  return lua_yieldk(L, 0, (lua_KContext)t, park_k);
}

void crt_task_wake(crt_task *t, int n) {
  if (crt_timer_armed(&t->timer))
    crt_timer_stop(t->rt, &t->timer);
  t->parked = 0;
  t->unpark = NULL;
  t->unpark_data = NULL;
  t->nres = n;
  ready_push(t->rt, t);
}

/* ---- ending a task ---------------------------------------------------- */

/* While a task is alive it is in rt->alive (for shutdown); once it failed
 * unobserved it is in rt->unobserved. Both lists use alink. */
static crt_task *task_of(crt_link *l) { return crt_container_of(l, crt_task, alink); }

static void unobserved_add(crt_runtime *rt, crt_task *t) {
  t->unobs = 1;
  crt_list_push_front(&rt->unobserved, &t->alink);
}

static void unobserved_remove(crt_runtime *rt, crt_task *t) {
  if (!t->unobs)
    return;
  t->unobs = 0;
  crt_list_remove(&rt->unobserved, &t->alink);
}

/* Print the error of a failed task nobody awaited. L is the running thread
 * (the main state in the scheduler, whichever thread runs a finalizer). */
static void report(lua_State *L, crt_task *t, const char *what) {
  lua_pushstring(L, what);
  if (t->future) { /* the outcome table: {error, traceback} */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->oref);
    lua_rawgeti(L, -1, 2);
    lua_remove(L, -2);
  } else { /* the traceback string at the top of the dead coroutine */
    lua_checkstack(t->co, 1);
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, L, 1);
  }
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(no traceback)");
  }
  lua_concat(L, 2);
  crt_rt_report(t->rt, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* A notification is unlinked only once offered: when an offer raises (out
 * of memory) the rest stays in the list, freed by crt_task_finalize. */
static void notify_all(crt_task *t) {
  lua_State *L = t->rt->L;
  notify *n;
  while ((n = t->notify) != NULL) {
    lua_pushinteger(L, n->tag);
    crt_chan_offer(L, n->ch);
    t->notify = n->next;
    crt_chan_release(n->ch);
    free(n);
  }
}

static void notify_free(crt_task *t) {
  notify *n;
  while ((n = t->notify) != NULL) {
    t->notify = n->next;
    crt_chan_release(n->ch);
    free(n);
  }
}

/* Replace the traceback at the top of L by itself without the frames of
 * crt's own Lua code (bindings/prelude.lua): they say nothing to the user. */
static void drop_internal_frames(lua_State *L) {
  const char *tb = lua_tostring(L, -1);
  if (!tb || !strstr(tb, "[crt prelude]"))
    return;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (const char *line = tb; *line;) {
    const char *end = strchr(line, '\n');
    size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
    if (!(line[0] == '\t' && strncmp(line + 1, "[crt prelude]", 13) == 0))
      luaL_addlstring(&b, line, n);
    line += n;
  }
  luaL_pushresult(&b);
  lua_replace(L, -2);
}

static void end_task(crt_task *t);

/* The task's coroutine returned or raised: record how, wake its awaiters,
 * tell the channels that asked, unpin it. */
static void finish(crt_task *t, int st, int nres) {
  crt_runtime *rt = t->rt;
  lua_State *co = t->co;
  if (st == LUA_OK) {
    t->status = CRT_TASK_DONE;
    t->nres = nres;
    t->observed = 1;
  } else {
    /* Keep the error value and a traceback taken where it was raised, then
     * reset the coroutine so its to-be-closed variables are closed. A string
     * error carries the traceback itself (what awaiters re-raise); any other
     * value is re-raised as it is and its traceback is kept for reports. */
    lua_State *L = rt->L;
    /* Only a task that was asked to cancel ends cancelled. crt.Cancelled
     * raised in any other task (it awaited a task that was cancelled, say)
     * is an error like any other: its awaiters get it, and nobody awaiting
     * it is reported (as asyncio reports a CancelledError that escapes). */
    int is_cancel_value = crt_sched_is_cancelled(co, -1);
    int cancelled = is_cancel_value && t->cancel_asked;
    lua_checkstack(L, 4);
    lua_xmove(co, L, 1); /* error value */
    if (cancelled) {
      lua_pushliteral(L, "crt.Cancelled");
    } else if (is_cancel_value) {
      luaL_traceback(L, co,
                     "crt.Cancelled (in a task that was not cancelled: it awaited a "
                     "cancelled task, or raised crt.Cancelled itself)",
                     0);
      drop_internal_frames(L);
    } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
      luaL_traceback(L, co, lua_tostring(L, -1), 0);
      drop_internal_frames(L);
      lua_replace(L, -2);   /* the error becomes message + traceback */
      lua_pushvalue(L, -1); /* which is also what a report prints */
    } else {
      /* Re-raised as it is; the report names its type. No metamethod is
       * called here: the scheduler runs no user code outside tasks. */
      lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
      luaL_traceback(L, co, lua_tostring(L, -1), 0);
      drop_internal_frames(L);
      lua_remove(L, -2);
    }
    /* Stack of L: ..., error, traceback. */
    lua_resetthread(co);
    lua_settop(co, 0);
    lua_checkstack(co, 2);
    lua_xmove(L, co, 2);
    t->nres = 2;
    t->status = cancelled ? CRT_TASK_CANCELLED : CRT_TASK_FAILED;
    if (cancelled)
      t->observed = 1; /* cancellation is not an error */
  }

  end_task(t);
}

/* Common end of every task, once its outcome is recorded: wake its
 * awaiters, tell the channels that asked, route an unobserved failure,
 * unpin it. */
static void end_task(crt_task *t) {
  crt_runtime *rt = t->rt;
  for (crt_task *a = t->awaiters; a;) {
    crt_task *next = a->await_next;
    a->await_next = NULL;
    t->observed = 1;
    crt_task_wake(a, 0);
    a = next;
  }
  t->awaiters = NULL;
  notify_all(t);

  crt_list_remove(&rt->alive, &t->alink);
  if (t->status == CRT_TASK_FAILED && !t->observed) {
    if (t == rt->main_task) {
      t->observed = 1;
      report(rt->L, t, "crt: error in the main chunk:\n");
      crt_rt_request_exit(rt, 1);
    } else {
      unobserved_add(rt, t);
    }
  }
  if (t == rt->main_task)
    rt->main_task = NULL;
  rt->nalive--;
  rt->nended++;
  luaL_unref(rt->L, LUA_REGISTRYINDEX, t->ref);
  t->ref = LUA_NOREF;
}

/* Run one task until it parks, yields or ends. */
static void resume(crt_task *t) {
  crt_runtime *rt = t->rt;
  lua_State *co = t->co;
  int nargs = t->nres;
  if (t->status == CRT_TASK_PENDING) {
    if (t->cancel_req) {
      /* Cancelled before it ever ran: it ends cancelled, its body unrun. */
      lua_settop(co, 0);
      push_cancelled(co);
      finish(t, LUA_ERRRUN, 0);
      return;
    }
    t->status = CRT_TASK_RUNNING;
  }
  t->parked = 0; /* nres: what park_k returns when there is no continuation */
  crt_task *saved = running;
  running = t;
  int nres = 0;
  int st = lua_resume(co, rt->L, nargs, &nres);
  running = saved;
  if (st == LUA_YIELD) {
    if (!t->parked) {
      /* A bare coroutine.yield() in a task: it acts as crt.yield(). */
      lua_pop(co, nres);
      t->nres = 0;
      ready_push(rt, t);
    }
    return;
  }
  finish(t, st, nres);
}

void crt_sched_drain(crt_runtime *rt) {
  if (rt->draining)
    return;
  rt->draining = 1;
  /* A budget keeps tasks that wake each other forever (or yield in a loop)
   * from starving I/O: past it, the loop polls (without blocking) first. */
  size_t budget = 1u << 16;
  crt_task *t;
  while (budget-- > 0 && !rt->exiting && (t = ready_pop(rt)))
    resume(t);
  rt->draining = 0;
  if (rt->ready.head && !rt->exiting) {
    if (!uv_is_active((uv_handle_t *)&rt->idle))
      uv_idle_start(&rt->idle, on_idle);
  } else if (uv_is_active((uv_handle_t *)&rt->idle)) {
    uv_idle_stop(&rt->idle);
  }
}

/* ---- spawning -------------------------------------------------------- */

crt_task *crt_task_spawn(crt_runtime *rt, lua_State *L, int nargs) {
  lua_State *co = lua_newthread(L);
  crt_task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, CRT_TASK_MT);
  lua_rotate(L, -2, 1); /* fn args... task co */
  lua_setiuservalue(L, -2, 1);
  lua_rotate(L, -(nargs + 2), 1); /* task fn args... */
  lua_xmove(L, co, nargs + 1);
  t->rt = rt;
  t->co = co;
  t->ref = LUA_NOREF;
  crt_timer_init(&t->timer, NULL);
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->status = CRT_TASK_PENDING;
  t->nres = nargs;
  rt->nalive++;
  crt_list_push_front(&rt->alive, &t->alink);
  ready_push(rt, t);
  return t;
}

/* ---- futures: tasks that C code completes -------------------------------- */

crt_task *crt_task_future(crt_runtime *rt, lua_State *L, crt_unpark_fn on_cancel, void *data) {
  crt_task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, CRT_TASK_MT);
  t->rt = rt;
  t->future = 1;
  t->oref = LUA_NOREF;
  crt_timer_init(&t->timer, NULL);
  t->status = CRT_TASK_RUNNING;
  t->unpark = on_cancel;
  t->unpark_data = data;
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rt->nalive++;
  crt_list_push_front(&rt->alive, &t->alink);
  return t;
}

void crt_task_complete(crt_task *t, lua_State *L, int ok, int n) {
  if (t->ref == LUA_NOREF) { /* already ended (abandoned at shutdown) */
    lua_pop(L, n);
    return;
  }
  if (!ok && n != 1) {
    lua_pop(L, n - 1 > 0 ? n - 1 : 0);
    if (n < 1)
      lua_pushnil(L);
    n = 1;
  }
  /* The outcome table: the results, or {error, traceback}. */
  lua_createtable(L, ok ? n : 2, 0);
  lua_insert(L, -(n + 1));
  if (ok) {
    for (int i = n; i >= 1; i--)
      lua_rawseti(L, -(i + 1), i);
    t->status = CRT_TASK_DONE;
    t->nres = n;
    t->observed = 1;
  } else {
    int cancelled = crt_sched_is_cancelled(L, -1);
    if (lua_type(L, -1) == LUA_TSTRING) /* it carries its traceback */
      lua_pushvalue(L, -1);
    else
      lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
    lua_rawseti(L, -3, 2);
    lua_rawseti(L, -2, 1);
    t->status = cancelled ? CRT_TASK_CANCELLED : CRT_TASK_FAILED;
    t->nres = 2;
    if (cancelled)
      t->observed = 1;
  }
  t->oref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->unpark = NULL;
  t->unpark_data = NULL;
  end_task(t);
}

/* ---- cancellation ------------------------------------------------------ */

void crt_task_cancel(crt_task *t) {
  if (t->ref == LUA_NOREF)
    return; /* finished: nothing to cancel */
  t->cancel_asked = 1;
  if (t->future) {
    /* Its C code is told once; it completes the task (perhaps at once). */
    if (!t->cancel_req && t->unpark) {
      t->cancel_req = 1;
      t->unpark(t, t->unpark_data);
    }
    return;
  }
  if (t->parked && t->queued) {
    t->cancel_now = 1; /* yielding (crt.yield): resumes soon, raises there */
  } else if (t->parked) {
    crt_unpark_fn unpark = t->unpark;
    void *data = t->unpark_data;
    t->unpark = NULL;
    t->unpark_data = NULL;
    if (unpark)
      unpark(t, data);
    if (t->deferred) {
      /* The wait completed on another thread and its wake is on the way:
       * keep the result, deliver the cancel at the next wait point. */
      t->deferred = 0;
      t->cancel_req = 1;
      return;
    }
    t->parked = 0;
    if (crt_timer_armed(&t->timer))
      crt_timer_stop(t->rt, &t->timer);
    t->cancel_now = 1;
    t->nres = 0;
    ready_push(t->rt, t);
  } else {
    t->cancel_req = 1; /* running, queued or not started yet */
  }
}

void crt_sched_cancel_all(crt_runtime *rt, int abandon) {
  /* Give every task a chance to run its cleanup: cancel, run until nothing
   * is ready, and again for tasks that caught crt.Cancelled and waited
   * again. With `abandon`, what is still alive after that is detached from
   * its wait source and ended as cancelled without running further (by then
   * the runtime has stopped every thread that could still wake it). */
  for (int round = 0; round < 3 && !crt_list_empty(&rt->alive); round++) {
    /* cancelling a future may end it (and unlink it) at once */
    crt_list_each_safe(&rt->alive, it, nx) crt_task_cancel(task_of(it));
    while (rt->ready.head)
      crt_sched_drain(rt);
  }
  if (!abandon)
    return;
  while (!crt_list_empty(&rt->alive)) {
    crt_task *t = task_of(rt->alive.head);
    if (t->future) {
      /* Every thread that could complete it has stopped. */
      t->unpark = NULL;
      push_cancelled(rt->L);
      crt_task_complete(t, rt->L, 0, 1);
      continue;
    }
    if (t->parked && t->unpark)
      t->unpark(t, t->unpark_data);
    t->parked = 0;
    t->unpark = NULL;
    lua_settop(t->co, 0);
    push_cancelled(t->co);
    finish(t, LUA_ERRRUN, 0);
  }
  while (ready_pop(rt))
    ;
}

/* ---- sleeping ------------------------------------------------------------ */

static void sleep_fire(crt_timer *tm) {
  crt_task *t = crt_container_of(tm, crt_task, timer);
  crt_task_wake(t, 0);
}

static void sleep_unpark(crt_task *t, void *data) {
  (void)data;
  crt_timer_stop(t->rt, &t->timer);
}

int crt_task_sleep(lua_State *L, crt_task *t, double seconds) {
  t->timer.fire = sleep_fire;
  crt_timer_start(t->rt, &t->timer, seconds);
  return crt_task_park(L, t, sleep_unpark, NULL, NULL, 0);
}

static void deadline_fire(crt_timer *tm) {
  crt_task *t = crt_container_of(tm, crt_task, timer);
  crt_unpark_fn unpark = t->unpark;
  void *data = t->unpark_data;
  t->unpark = NULL;
  t->unpark_data = NULL;
  if (unpark)
    unpark(t, data);
  if (t->deferred) {
    t->deferred = 0; /* completed meanwhile: its wake is on the way */
    return;
  }
  t->timed_out = 1;
  crt_task_wake(t, 0);
}

void crt_task_set_deadline(crt_task *t, double seconds) {
  t->timed_out = 0;
  t->timer.fire = deadline_fire;
  crt_timer_start(t->rt, &t->timer, seconds);
}

void crt_task_defer_unpark(crt_task *t) { t->deferred = 1; }

int crt_task_timed_out(crt_task *t) {
  int v = t->timed_out;
  t->timed_out = 0;
  return v;
}

int crt_task_yield(lua_State *L, crt_task *t) {
  if (t->cancel_req) {
    t->cancel_req = 0;
    push_cancelled(L);
    return lua_error(L); /* layers: unwind (park protocol: crt.Cancelled into the task) */
  }
  /* Parked with no wait source, and already at the back of the queue: a
   * cancel arriving before it runs again is delivered when it resumes. */
  t->parked = 1;
  t->k = NULL;
  t->unpark = NULL;
  t->nres = 0;
  ready_push(t->rt, t);
  return lua_yieldk(L, 0, (lua_KContext)t, park_k);
}

/* ---- awaiting ------------------------------------------------------------ */

/* Push the results of a finished task onto L and return their number, or
 * push its error value and return CRT_TASK_RAISE; CRT_TASK_NOSTACK (nothing
 * pushed) when L's stack cannot hold the results. */
int crt_task_push_outcome(lua_State *L, crt_task *t) {
  lua_State *co = t->co;
  t->observed = 1;
  unobserved_remove(t->rt, t);
  if (t->future) {
    int n = t->status == CRT_TASK_DONE ? t->nres : 1;
    if (!lua_checkstack(L, n + 1))
      return CRT_TASK_NOSTACK;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->oref);
    int tb = lua_gettop(L);
    for (int i = 1; i <= n; i++)
      lua_rawgeti(L, tb, i);
    lua_remove(L, tb);
    return t->status == CRT_TASK_DONE ? n : CRT_TASK_RAISE;
  }
  if (t->status == CRT_TASK_DONE) {
    int n = t->nres;
    int top = lua_gettop(co);
    if (!lua_checkstack(L, n) || !lua_checkstack(co, 1))
      return CRT_TASK_NOSTACK;
    for (int i = top - n + 1; i <= top; i++) {
      lua_pushvalue(co, i);
      lua_xmove(co, L, 1);
    }
    return n;
  }
  if (!lua_checkstack(L, 1) || !lua_checkstack(co, 1))
    return CRT_TASK_NOSTACK;
  lua_pushvalue(co, 1); /* the error value */
  lua_xmove(co, L, 1);
  return CRT_TASK_RAISE;
}

static void await_unpark(crt_task *t, void *data) {
  crt_task *target = data;
  /* Awaiters of one task are few: a walk is cheaper than a back link in
   * every task. */
  for (crt_task **p = &target->awaiters; *p; p = &(*p)->await_next) {
    if (*p == t) {
      *p = t->await_next;
      break;
    }
  }
  t->await_next = NULL;
}

int crt_task_await(lua_State *L, crt_task *self, crt_task *target, lua_KFunction k) {
  self->await_next = target->awaiters;
  target->awaiters = self;
  /* A pending cancel is delivered by crt_task_park, after await_unpark. */
  return crt_task_park(L, self, await_unpark, target, k, (lua_KContext)target);
}

/* ---- queries ------------------------------------------------------------- */

int crt_task_status(crt_task *t) { return t->status; }
int crt_task_alive(crt_task *t) { return t->ref != LUA_NOREF; }

int crt_task_notify(lua_State *L, crt_task *t, crt_chan *ch, lua_Integer tag) {
  if (t->ref == LUA_NOREF) {
    lua_pushinteger(L, tag);
    crt_chan_offer(L, ch);
    return 0;
  }
  notify *n = malloc(sizeof *n);
  if (!n)
    return -1;
  crt_chan_retain(ch);
  n->ch = ch;
  n->tag = tag;
  n->next = t->notify;
  t->notify = n;
  return 0;
}

/* Mark the error of a failed task as seen (crt.group re-raises one). */
void crt_task_observe(crt_task *t) {
  t->observed = 1;
  unobserved_remove(t->rt, t);
}

/* What the task object's finalizer does: a failed task nobody awaited and
 * nobody can reach any more is reported now (L: the thread running the
 * finalizer). */
void crt_task_finalize(lua_State *L, crt_task *t) {
  if (t->unobs && t->rt) {
    unobserved_remove(t->rt, t);
    report(L, t, "crt: error in a task that nobody awaited:\n");
  }
  if (t->future && t->oref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, t->oref);
    t->oref = LUA_NOREF;
  }
  notify_free(t); /* left by an end that ran out of memory */
}

void crt_sched_report_unobserved(crt_runtime *rt) {
  while (!crt_list_empty(&rt->unobserved)) {
    crt_task *t = task_of(rt->unobserved.head);
    unobserved_remove(rt, t);
    report(rt->L, t, "crt: error in a task that nobody awaited:\n");
  }
}

void crt_sched_set_cancelled(lua_State *L) { lua_rawsetp(L, LUA_REGISTRYINDEX, &cancelled_key); }
void crt_sched_push_cancelled(lua_State *L) { push_cancelled(L); }
