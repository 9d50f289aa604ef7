/*
 * thread.c - crt.thread: run, pool objects, spawn of dedicated threads, id,
 * size and stats, the Lua face of the thread pool engine (runtime/pool.c).
 *
 * Loop thread only (the main state of a runtime). Worker threads never call
 * into this file: they hand finished jobs back through crt_rt_post, and the
 * `complete` callbacks below run on the loop thread.
 *
 * Ownership of a job, in order: a Lua box (jbox or batch box) while it is
 * being built, so that an error raised on the way frees it; the pool while
 * it is queued or running; its `complete` callback once it is back, which
 * frees it. A waiting task is recorded as the job's owner; cancelling the
 * task clears the owner (the job is "detached") and asks the engine to drop
 * or interrupt the job, whose completion then only frees it.
 *
 * map and imap live in bindings/thread_map.c, the function cache (bytecode
 * dumped once, upvalue classes) in runtime/fncache.c; thread.h declares what
 * they share with this file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "chan.h"
#include "codec.h"
#include "fncache.h"
#include "pool.h"
#include "rt.h"
#include "scheduler.h"
#include "thread.h"
#include "util.h"

#define POOL_MT CRT_THREAD_POOL_MT
#define JBOX_MT "crt.thread.job"

static const char mod_key = 'M';
static const char default_key = 'D';

typedef crt_tmod tmod;
typedef crt_pbox pbox;

/* A collected pool whose threads were still running: freed when its last
 * thread has exited (the exit post). */
typedef struct zombie {
  crt_post post; /* first */
  crt_pool *p;
  tmod *m;
  crt_link link; /* in m->zombies */
} zombie;

#define FREE_JOBS_MAX 256
#define KEEP_BUF_MAX ((size_t)16 * 1024)

crt_job *crt_thread_job_alloc(tmod *m) {
  crt_link *l = crt_list_pop(&m->free_jobs);
  crt_job *j = crt_container_of(l, crt_job, link);
  if (!j)
    return crt_job_new();
  m->nfree--;
  crt_buf in = j->in, out = j->out;
  memset(j, 0, sizeof *j);
  j->in = in;
  j->out = out;
  return j;
}

void crt_thread_job_release(tmod *m, crt_job *j) {
  if (m->closed || m->nfree >= FREE_JOBS_MAX || j->in.cap > KEEP_BUF_MAX ||
      j->out.cap > KEEP_BUF_MAX) {
    crt_job_free(j);
    return;
  }
  free(j->kinds);
  crt_fnblob_release(j->fn);
  crt_shared_release(j->upv);
  j->kinds = NULL;
  j->fn = NULL;
  j->upv = NULL;
  crt_buf_reset(&j->in);
  crt_buf_reset(&j->out);
  crt_list_push_front(&m->free_jobs, &j->link);
  m->nfree++;
}

typedef struct jbox {
  crt_job *job;
} jbox;

/* ---- pools --------------------------------------------------------------- */

static void unlink_pool(pbox *pb) {
  if (!pb->linked)
    return;
  crt_list_remove(&pb->m->pools, &pb->link);
  pb->linked = 0;
}

/* The last thread of a zombie pool has exited: join it and free all. */
static void zombie_exited(crt_post *post) {
  zombie *z = (zombie *)post;
  crt_list_remove(&z->m->zombies, &z->link);
  crt_pool_free(z->p);
  free(z);
}

/* A pool object was collected. Its threads may still run a detached job
 * (cancelled, coming back): never wait for them here, on the loop thread.
 * The pool becomes a zombie, freed when its last thread has exited. */
static int pool_gc(lua_State *L) {
  pbox *pb = lua_touserdata(L, 1);
  unlink_pool(pb);
  crt_pool *p = pb->p;
  pb->p = NULL;
  if (!p)
    return 0;
  zombie *z = malloc(sizeof *z);
  if (!z) {
    crt_pool_free(p); /* no memory to wait elsewhere: wait here */
    return 0;
  }
  z->post.fn = zombie_exited;
  z->post.next = NULL;
  z->p = p;
  z->m = pb->m;
  if (crt_pool_abandon(p, &z->post)) {
    free(z);
    crt_pool_free(p);
    return 0;
  }
  crt_list_push_front(&z->m->zombies, &z->link);
  return 0;
}

/* Push an empty pool object (its pool comes with attach_pool). */
static pbox *push_pool(lua_State *L) {
  pbox *pb = lua_newuserdatauv(L, sizeof *pb, 0);
  memset(pb, 0, sizeof *pb);
  luaL_setmetatable(L, POOL_MT);
  return pb;
}

static void attach_pool(pbox *pb, tmod *m, crt_pool *p, int oneshot) {
  pb->p = p;
  pb->m = m;
  pb->oneshot = oneshot;
  crt_list_push_front(&m->pools, &pb->link);
  pb->linked = 1;
}

/* Push a new pool object. Raises when out of memory (nothing leaks). */
static pbox *new_pool(lua_State *L, tmod *m, const crt_pool_config *cfg) {
  pbox *pb = push_pool(L);
  crt_pool *p = crt_pool_new(m->rt, cfg);
  if (!p)
    crt_errorf(L, "crt.thread", "not enough memory");
  attach_pool(pb, m, p, cfg->oneshot);
  return pb;
}

crt_pbox *crt_thread_check_pool(lua_State *L, const char *fname) {
  pbox *pb = luaL_testudata(L, 1, POOL_MT);
  if (!pb || pb->oneshot)
    crt_typeerror(L, fname, 1, "pool");
  return pb;
}

/* Push the default pool, creating it (not its threads) on first use. */
crt_pbox *crt_thread_default_pool(lua_State *L, tmod *m) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &default_key) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  crt_pool_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = m->default_size;
  cfg.open = crt_open_worker;
  pbox *pb = new_pool(L, m, &cfg);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &default_key);
  return pb;
}

void crt_thread_check_open(lua_State *L, tmod *m, pbox *pb, const char *fname) {
  if (m->closed || crt_rt_is_closing(m->rt))
    crt_errorf(L, fname, "the runtime is closing");
  if (!pb->p || crt_pool_closed(pb->p))
    crt_errorf(L, fname, "the pool is closed");
}

/* ---- the function cache (runtime/fncache.c), raising its errors ---------- */

void crt_thread_fn_prepare(lua_State *L, tmod *m, int f, crt_fnprep *fp) {
  const char *err = NULL;
  if (crt_fncache_prepare(L, &m->fncache, f, fp, &err) != 0)
    luaL_error(L, "%s", err);
}

void crt_thread_job_set_fn(lua_State *L, crt_job *j, const crt_fnprep *fp) {
  if (crt_fncache_set_job(j, fp) != 0)
    crt_errorf(L, "crt.thread", "not enough memory");
}

/* ---- errors of values that cannot be sent ------------------------------- */

/* Encode the value at idx alone, numbered as argument #idx, to find out
 * whether (and why) it cannot be sent. Returns 0, or 1 with the message
 * pushed. */
int crt_thread_value_error(lua_State *L, int idx, const char *what) {
  crt_buf tmp;
  crt_buf_init(&tmp);
  int top = lua_gettop(L);
  lua_pushvalue(L, idx);
  int n = 1, argbase = idx - 1;
  if (idx == 1) {
    lua_pushnil(L); /* two values, so that the codec says "argument #1" */
    n = 2;
    argbase = 0;
  }
  int rc = crt_codec_encode(L, top + 1, n, &tmp, 0, what, argbase);
  crt_buf_free(&tmp);
  if (rc == 0) {
    lua_settop(L, top);
    return 0;
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 1;
}

/* The message is at the top: name the argument in first..last that cannot
 * be sent when one can be found, and raise. */
int crt_thread_send_error(lua_State *L, int first, int last, const char *what) {
  for (int i = first; i <= last; i++)
    if (crt_thread_value_error(L, i, what))
      return lua_error(L);
  return lua_error(L);
}

/* ---- run ------------------------------------------------------------------ */

static int jbox_gc(lua_State *L) {
  jbox *jb = lua_touserdata(L, 1);
  crt_job_free(jb->job);
  jb->job = NULL;
  return 0;
}

/* Push the outcome of a finished CALL job onto co: true, results... or
 * false, error. Returns the count. */
static int push_outcome(lua_State *co, crt_job *j) {
  lua_checkstack(co, 4);
  if (j->status == CRT_JOB_OK || j->status == CRT_JOB_ERROR) {
    lua_pushboolean(co, j->status == CRT_JOB_OK);
    int base = lua_gettop(co);
    int n = crt_codec_decode(co, j->out.data, j->out.len, CRT_CODEC_FUNCTIONS | CRT_CODEC_MAYRAISE);
    if (n >= 0 && (j->status == CRT_JOB_OK || n == 1))
      return n + 1;
    if (n < 0) {
      lua_pushboolean(co, 0);
      lua_replace(co, base);
      return 2;
    }
    lua_settop(co, base - 1);
    lua_pushboolean(co, 0);
    lua_pushliteral(co, "crt.thread: malformed error from a worker");
    return 2;
  }
  lua_pushboolean(co, 0);
  crt_sched_push_cancelled(co);
  return 2;
}

static void run_complete(crt_job *j) {
  tmod *m = j->ud;
  m->njobs--;

  crt_task *t = j->owner;
  if (!t) {
    crt_thread_job_release(m, j);
    return;
  }
  if (j->kind == CRT_JOB_CALL) {
    /* run/pool:run: the task is a future (no coroutine); complete it. */
    lua_State *L = m->L;
    int n = push_outcome(L, j);
    int ok = lua_toboolean(L, -n);
    lua_remove(L, -n);
    crt_thread_job_release(m, j);
    crt_task_complete(t, L, ok, n - 1);
    return;
  }
  /* A dedicated thread has ended: join it (it only has to return). The
   * owner's task pins the pool object, so the pool is alive. */
  if (j->kind == CRT_JOB_SPAWN)
    crt_pool_close(j->pool);
  int n = push_outcome(crt_task_co(t), j);
  crt_thread_job_release(m, j);
  crt_task_wake(t, n);
}

static void run_unpark(crt_task *t, void *data) {
  (void)t;
  crt_job *j = data;
  j->owner = NULL;
  crt_pool_cancel(j);
}

/* Stack: job box, pool, ok, results... or job box, pool, false, error. */
static int run_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  if (!lua_toboolean(L, 3)) {
    lua_settop(L, 4);
    return lua_error(L);
  }
  return lua_gettop(L) - 3;
}

/* The body of the task that crt.thread.run returns: submit, then park until
 * the job comes back. Arguments: the job box, the pool object (the task
 * pins the pool while the job is out). */
static int run_body(lua_State *L) {
  jbox *jb = lua_touserdata(L, 1);
  pbox *pb = lua_touserdata(L, 2);
  crt_task *t = crt_task_require(L, "crt.thread.run");
  crt_job *j = jb->job;
  if (!j)
    return crt_errorf(L, "crt.thread.run", "job already started");
  if (!pb->p || crt_pool_closed(pb->p) || pb->m->closed) {
    /* Closed between the call and the start of this task: as if the close
     * had dropped the queued job. */
    crt_sched_push_cancelled(L);
    return lua_error(L);
  }
  jb->job = NULL;
  j->owner = t;
  j->ud = pb->m;
  j->complete = run_complete;
  int rc = crt_pool_submit(pb->p, &j, 1);
  if (rc != 0) {
    crt_job_free(j);
    return crt_errorf(L, "crt.thread.run", "cannot start a thread: %s",
                      rc == UV_EPIPE ? "the pool is closed" : strerror(-rc));
  }
  pb->m->njobs++;
  /* The arguments stay on the stack: they pin the pool object while the
   * job is out. The outcome is pushed above them (see run_k). */
  lua_settop(L, 2);
  return crt_task_park(L, t, run_unpark, j, run_k, 0);
}

/* Build the CALL (or SPAWN) job for the function at f and its nargs
 * arguments (plus, for SPAWN, the two values at extra, extra + 1), owned by
 * a job box pushed on the stack. */
static jbox *call_job(lua_State *L, tmod *m, int f, int nargs, int extra, int kind,
                      const char *fname, const char *what) {
  jbox *jb = lua_newuserdatauv(L, sizeof *jb, 0);
  jb->job = NULL;
  luaL_setmetatable(L, JBOX_MT);
  int top = lua_gettop(L);
  crt_fnprep fp;
  crt_thread_fn_prepare(L, m, f, &fp);
  luaL_checkstack(L, nargs + 4, fname);
  for (int i = 1; i <= nargs; i++)
    lua_pushvalue(L, f + i);
  if (extra) {
    lua_pushvalue(L, extra);
    lua_pushvalue(L, extra + 1);
  }
  crt_job *j = crt_thread_job_alloc(m);
  if (!j)
    return crt_errorf(L, fname, "not enough memory"), NULL;
  jb->job = j;
  j->kind = kind;
  if (crt_codec_encode(L, top + 1, lua_gettop(L) - top, &j->in, 0, what, 0) != 0)
    crt_thread_send_error(L, f, f + nargs, what);
  lua_settop(L, top);
  crt_thread_job_set_fn(L, j, &fp);
  return jb;
}

/* Start the task that runs the job in the box at the top on the pool at
 * pbidx; pushes the task (the box is popped). The body is a light C
 * function and the box and pool its arguments: no closure per job. */
static int start_task(lua_State *L, tmod *m, int pbidx) {
  lua_pushcfunction(L, run_body);
  lua_insert(L, -2);
  lua_pushvalue(L, pbidx);
  crt_task_spawn(m->rt, L, 2);
  return 1;
}

/* task:cancel() of a run: drop the queued job (which completes the task at
 * once, as cancelled) or interrupt the running one (it completes later). */
static void future_cancel(crt_task *t, void *data) {
  (void)t;
  crt_pool_cancel((crt_job *)data);
}

/* run and pool:run return a future: a task without a coroutine that the
 * job's completion ends (a job costs no coroutine, ~1 KiB, of its own). The
 * job is submitted at once. */
static int do_run(lua_State *L, tmod *m, int pbidx, int f, const char *fname, const char *what) {
  pbox *pb = lua_touserdata(L, pbidx);
  if (lua_type(L, f) != LUA_TFUNCTION)
    return crt_typeerror(L, fname, f, "function");
  crt_thread_check_open(L, m, pb, fname);
  int nargs = pbidx - f - 1; /* the pool object was pushed after the arguments */
  jbox *jb = call_job(L, m, f, nargs, 0, CRT_JOB_CALL, fname, what);
  /* May raise (no memory): the box still owns the job then. */
  crt_task *t = crt_task_future(m->rt, L, future_cancel, jb->job);
  crt_job *j = jb->job;
  jb->job = NULL;
  j->owner = t;
  j->ud = m;
  j->complete = run_complete;
  int rc = crt_pool_submit(pb->p, &j, 1);
  if (rc != 0) {
    crt_job_free(j);
    crt_sched_push_cancelled(L); /* end the future quietly, then raise */
    crt_task_complete(t, L, 0, 1);
    return crt_errorf(L, fname, "cannot start a thread: %s",
                      rc == UV_EPIPE ? "the pool is closed" : strerror(-rc));
  }
  m->njobs++;
  /* The task pins the pool object while it lives. */
  lua_pushvalue(L, pbidx);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int l_run(lua_State *L) {
  tmod *m = crt_thread_mod(L);
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, "crt.thread.run", 1, "function");
  crt_thread_default_pool(L, m); /* after the arguments */
  return do_run(L, m, lua_gettop(L), 1, "crt.thread.run", "crt.thread.run: cannot send");
}

static int pool_run(lua_State *L) {
  tmod *m = crt_thread_mod(L);
  crt_thread_check_pool(L, "pool:run");
  lua_pushvalue(L, 1); /* the pool after the arguments */
  return do_run(L, m, lua_gettop(L), 2, "pool:run", "pool:run: cannot send");
}

/* ---- pools from Lua -------------------------------------------------------- */

static int l_pool(lua_State *L) {
  tmod *m = crt_thread_mod(L);
  const char *fname = "crt.thread.pool";
  crt_pool_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = m->default_size;
  cfg.open = crt_open_worker;
  if (!lua_isnoneornil(L, 1) && lua_type(L, 1) != LUA_TTABLE)
    return crt_typeerror(L, fname, 1, "table");
  lua_settop(L, 1);
  if (m->closed || crt_rt_is_closing(m->rt))
    return crt_errorf(L, fname, "the runtime is closing");
  if (lua_istable(L, 1)) {
    if (lua_getfield(L, 1, "size") != LUA_TNIL) {
      int isint;
      lua_Integer n = lua_tointegerx(L, -1, &isint);
      if (!isint)
        return crt_argerror(L, fname, 1, "size must be an integer");
      if (n < 1 || n > 1024)
        return crt_errorf(L, fname, "bad argument #1 (size must be from 1 to 1024, got %I)", n);
      cfg.size = (int)n;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "memory") != LUA_TNIL) {
      int isint;
      lua_Integer n = lua_tointegerx(L, -1, &isint);
      if (!isint || n < 0)
        return crt_argerror(L, fname, 1, "memory must be a number of bytes >= 0");
      cfg.memory = (size_t)n;
    }
    lua_pop(L, 1);
    int t = lua_getfield(L, 1, "init");
    if (t != LUA_TNIL && t != LUA_TFUNCTION)
      return crt_argerror(L, fname, 1, "init must be a function");
  } else {
    lua_pushnil(L);
  }
  /* Stack: opts, init. The init function is encoded whole (it runs once per
   * worker: no cache needed). */
  pbox *pb = push_pool(L); /* 3; raising from here on leaks nothing */
  crt_buf init;
  crt_buf_init(&init);
  if (!lua_isnil(L, 2)) {
    if (crt_codec_encode(L, 2, 1, &init, 0, "crt.thread.pool: cannot send init", 0) != 0) {
      crt_buf_free(&init);
      return lua_error(L);
    }
  }
  cfg.init = init.data;
  cfg.init_len = init.len;
  crt_pool *p = crt_pool_new(m->rt, &cfg);
  crt_buf_free(&init); /* the pool keeps its own copy */
  if (!p)
    return crt_errorf(L, fname, "not enough memory");
  attach_pool(pb, m, p, 0);
  return 1;
}

static int pool_close(lua_State *L) {
  pbox *pb = crt_thread_check_pool(L, "pool:close");
  if (pb->p)
    crt_pool_close(pb->p);
  return 0;
}

static int pool_size(lua_State *L) {
  pbox *pb = crt_thread_check_pool(L, "pool:size");
  lua_pushinteger(L, pb->p ? crt_pool_size(pb->p) : 0);
  return 1;
}

static int pool_tostring(lua_State *L) {
  pbox *pb = lua_touserdata(L, 1);
  lua_pushfstring(L, "crt.thread.pool: %p (%d threads%s)", (void *)pb,
                  pb->p ? crt_pool_size(pb->p) : 0,
                  (!pb->p || crt_pool_closed(pb->p)) ? ", closed" : "");
  return 1;
}

/* ---- dedicated threads ------------------------------------------------- */

/* crt.thread._spawn(fn, ...) -> task, inbox, outbox. Upvalue 2: crt.channel. */
static int l_spawn(lua_State *L) {
  tmod *m = crt_thread_mod(L);
  const char *fname = "crt.thread.spawn";
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, fname, 1, "function");
  if (m->closed || crt_rt_is_closing(m->rt))
    return crt_errorf(L, fname, "the runtime is closing");
  int nargs = lua_gettop(L) - 1;
  /* The mailboxes: unbounded, so that send never waits. */
  for (int i = 0; i < 2; i++) {
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_call(L, 0, 1);
  }
  int inbox = nargs + 2;
  crt_pool_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = 1;
  cfg.oneshot = 1;
  cfg.open = crt_open_worker;
  new_pool(L, m, &cfg);
  int pbidx = lua_gettop(L);
  call_job(L, m, 1, nargs, inbox, CRT_JOB_SPAWN, fname, "crt.thread.spawn: cannot send");
  start_task(L, m, pbidx);
  lua_pushvalue(L, inbox);
  lua_pushvalue(L, inbox + 1);
  return 3;
}

static const char worker_lua[] =
    "local spawn = ...\n"
    "local W = {}\n"
    "W.__index = W\n"
    "W.__name = 'crt.thread.worker'\n"
    "local function check(self, m)\n"
    "  if getmetatable(self) ~= W then\n"
    "    error(('worker:%s: bad argument #1 (worker expected, got %s)'):format(m, type(self)), 3)\n"
    "  end\n"
    "end\n"
    "function W.send(self, v)\n"
    "  check(self, 'send')\n"
    "  if v == nil then error('worker:send: bad argument #2 (value expected, got nil)', 2) end\n"
    "  return self._inbox:send(v)\n"
    "end\n"
    "function W.recv(self) check(self, 'recv') return self._outbox:recv() end\n"
    "function W.await(self) check(self, 'await') return self.task:await() end\n"
    "function W.cancel(self) check(self, 'cancel') return self.task:cancel() end\n"
    "function W.status(self) check(self, 'status') return self.task:status() end\n"
    "function W.done(self) check(self, 'done') return self.task:done() end\n"
    "function W.close(self) check(self, 'close') self._inbox:close() end\n"
    "function W.__tostring(self) return 'crt.thread.worker (' .. self.task:status() .. ')' end\n"
    "return function(...)\n"
    "  local task, inbox, outbox = spawn(...)\n"
    "  return setmetatable({task = task, _inbox = inbox, _outbox = outbox}, W)\n"
    "end\n";

/* ---- id, size, stats -------------------------------------------------------- */

static int l_id(lua_State *L) {
  lua_pushinteger(L, crt_pool_thread_id());
  return 1;
}

static int l_size(lua_State *L) {
  tmod *m = crt_thread_mod(L);
  lua_pushinteger(L, m->default_size);
  return 1;
}

static int l_stats(lua_State *L) {
  tmod *m = crt_thread_mod(L);
  int npools = 0;
  for (crt_link *l = m->pools.head; l; l = l->next) {
    pbox *pb = crt_container_of(l, pbox, link);
    if (pb->p && !crt_pool_closed(pb->p))
      npools++;
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, m->njobs);
  lua_setfield(L, -2, "jobs");
  lua_pushinteger(L, crt_pool_live_threads());
  lua_setfield(L, -2, "threads");
  lua_pushinteger(L, npools);
  lua_setfield(L, -2, "pools");
  return 1;
}

/* ---- opening --------------------------------------------------------------- */

static void on_close(void *ud) {
  tmod *m = ud;
  for (crt_link *l = m->pools.head; l; l = l->next) {
    pbox *pb = crt_container_of(l, pbox, link);
    if (pb->p)
      crt_pool_close(pb->p);
  }
  /* Zombies: wait for their threads; each one's exit post (run after the
   * hooks) frees it. */
  for (crt_link *l = m->zombies.head; l; l = l->next)
    crt_pool_close(crt_container_of(l, zombie, link)->p);
  m->closed = 1; /* jobs that come back from now on are freed at once */
  crt_link *l;
  while ((l = crt_list_pop(&m->free_jobs)))
    crt_job_free(crt_container_of(l, crt_job, link));
  m->nfree = 0;
  crt_fncache_clear(m->L, &m->fncache);
}

static int default_size(crt_runtime *rt) {
  if (crt_rt_config(rt)->threads > 0)
    return crt_rt_config(rt)->threads;
  const char *env = getenv("CRT_THREADS");
  if (env && *env) {
    char *end;
    long n = strtol(env, &end, 10);
    if (*end == 0 && n >= 1 && n <= 1024)
      return (int)n;
  }
  unsigned n = uv_available_parallelism();
  return n >= 1 ? (int)(n > 1024 ? 1024 : n) : 1;
}

int crt_open_thread(lua_State *L, crt_runtime *rt) {
  tmod *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  m->rt = rt;
  m->L = L;
  m->default_size = default_size(rt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mod_key);
  crt_fncache_init(L, &m->fncache);
  crt_rt_on_close(rt, on_close, m);

  static const luaL_Reg pool_methods[] = {
      {"run", pool_run},     {"map", crt_thread_pool_map}, {"imap", crt_thread_pool_imap},
      {"close", pool_close}, {"size", pool_size},          {NULL, NULL}};
  static const luaL_Reg pool_meta[] = {
      {"__gc", pool_gc}, {"__tostring", pool_tostring}, {"__close", pool_close}, {NULL, NULL}};
  lua_pushlightuserdata(L, m);
  crt_newclass(L, POOL_MT, pool_methods, pool_meta, 1);
  static const luaL_Reg jbox_meta[] = {{"__gc", jbox_gc}, {NULL, NULL}};
  crt_newclass(L, JBOX_MT, NULL, jbox_meta, 0);
  crt_thread_map_open(L);

  static const luaL_Reg funcs[] = {
      {"run", l_run}, {"map", crt_thread_l_map}, {"imap", crt_thread_l_imap}, {"pool", l_pool},
      {"id", l_id},   {"size", l_size},          {"stats", l_stats},          {NULL, NULL}};
  lua_createtable(L, 0, 10);
  lua_pushlightuserdata(L, m);
  luaL_setfuncs(L, funcs, 1);

  /* crt.thread.spawn: C part plus the worker object (Lua). */
  if (luaL_loadbuffer(L, worker_lua, sizeof worker_lua - 1, "=[crt thread]") != LUA_OK)
    return lua_error(L);
  lua_pushlightuserdata(L, m);
  lua_getfield(L, -4, "channel");
  lua_pushcclosure(L, l_spawn, 2);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "spawn");

  lua_setfield(L, -2, "thread");
  return 0;
}
