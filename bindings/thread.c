/*
 * thread.c - crt.thread: run, map, imap, pool, spawn, id and stats, the Lua
 * face of the thread pool engine (runtime/pool.c).
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
 * The function cache: a Lua function is dumped once per identity (weak table
 * fn -> blob box) and blobs are shared by identical bytecode (weak table
 * bytecode -> blob box), so that closures created afresh in a loop still hit
 * a worker's cache of loaded functions. Upvalues are not cached: they are
 * copied with every job, so a job always sees the values of the moment it
 * was submitted.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "chan.h"
#include "util.h"
#include "codec.h"
#include "pool.h"
#include "rt.h"
#include "scheduler.h"
#include "thread.h"

#define POOL_MT "crt.thread.pool"
#define JBOX_MT "crt.thread.job"
#define FNBOX_MT "crt.thread.fn"
#define BBOX_MT "crt.thread.batch"
#define MAX_CHUNK 100000

static const char mod_key = 'M';
static const char default_key = 'D';
static const char fnc_key = 'f';
static const char bcc_key = 'b';

typedef struct pbox pbox;

/* A collected pool whose threads were still running: freed when its last
 * thread has exited (the exit post). */
typedef struct zombie {
  crt_post post; /* first */
  crt_pool *p;
  struct tmod *m;
  struct zombie *next, *prev;
} zombie;

/* Per runtime: the pools (closed at shutdown) and the jobs out. */
typedef struct tmod {
  crt_runtime *rt;
  pbox *pools;
  int default_size;
  int closed;
  lua_Integer njobs;
  /* Finished jobs kept for reuse (with their buffers): no malloc per job. */
  crt_job *free_jobs;
  int nfree;
  /* The last function sent, pinned by last_ref: its cache entry without a
   * table lookup (a loop of runs sends the same function again and again). */
  const void *last_fn;
  struct fnbox *last_fb;
  int last_ref;
  zombie *zombies; /* collected pools whose threads are not joined yet */
} tmod;

#define FREE_JOBS_MAX 256
#define KEEP_BUF_MAX ((size_t)16 * 1024)

static crt_job *job_alloc(tmod *m) {
  crt_job *j = m->free_jobs;
  if (!j)
    return crt_job_new();
  m->free_jobs = j->next;
  m->nfree--;
  crt_buf in = j->in, out = j->out;
  memset(j, 0, sizeof *j);
  j->in = in;
  j->out = out;
  return j;
}

static void job_release(tmod *m, crt_job *j) {
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
  j->next = m->free_jobs;
  m->free_jobs = j;
  m->nfree++;
}

/* The Lua object of a pool (also of a dedicated thread's pool of one). */
struct pbox {
  crt_pool *p;
  tmod *m;
  pbox *next, *prev;
  int linked;
  int oneshot;
};

typedef struct jbox {
  crt_job *job;
} jbox;

/* A cached function: its blob, and what its upvalue names say once for all:
 * `simple` when every upvalue is _ENV (nothing to send but the arguments). */
typedef struct fnbox {
  crt_fnblob *b;
  int nups;
  int simple;
} fnbox;

/* A map or imap in flight. */
typedef struct batch {
  tmod *m;
  crt_runtime *rt;
  crt_task *task; /* parked waiting for it, or NULL */
  crt_job **jobs; /* outstanding (NULL once back) or not yet submitted */
  int njobs, ndone, submitted, failed, imap;
  lua_Integer chunk, nitems, idone;
  int results; /* map: the results table; imap: the queue of (i, v) pairs */
  int err;     /* the error value once failed */
  lua_Integer qhead, qtail;
  int progress, drawn;
  double t0, last;
  crt_shared *upv; /* the encoded upvalues (one reference) */
} batch;

typedef struct bbox {
  batch *b;
} bbox;

static tmod *mod_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* ---- pools --------------------------------------------------------------- */

static void unlink_pool(pbox *pb) {
  if (!pb->linked)
    return;
  if (pb->prev)
    pb->prev->next = pb->next;
  else
    pb->m->pools = pb->next;
  if (pb->next)
    pb->next->prev = pb->prev;
  pb->linked = 0;
}

/* The last thread of a zombie pool has exited: join it and free all. */
static void zombie_exited(crt_post *post) {
  zombie *z = (zombie *)post;
  if (z->prev)
    z->prev->next = z->next;
  else
    z->m->zombies = z->next;
  if (z->next)
    z->next->prev = z->prev;
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
  z->prev = NULL;
  z->next = z->m->zombies;
  if (z->next)
    z->next->prev = z;
  z->m->zombies = z;
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
  pb->next = m->pools;
  pb->prev = NULL;
  if (m->pools)
    m->pools->prev = pb;
  m->pools = pb;
  pb->linked = 1;
}

/* Push a new pool object. Raises when out of memory (nothing leaks). */
static pbox *new_pool(lua_State *L, tmod *m, const crt_pool_config *cfg) {
  pbox *pb = push_pool(L);
  crt_pool *p = crt_pool_new(m->rt, cfg);
  if (!p)
    luaL_error(L, "crt.thread: not enough memory");
  attach_pool(pb, m, p, cfg->oneshot);
  return pb;
}

static pbox *check_pool(lua_State *L, const char *fname) {
  pbox *pb = luaL_testudata(L, 1, POOL_MT);
  if (!pb || pb->oneshot)
    crt_typeerror(L, fname, 1, "pool");
  return pb;
}

/* Push the default pool, creating it (not its threads) on first use. */
static pbox *default_pool(lua_State *L, tmod *m) {
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

static void check_open(lua_State *L, tmod *m, pbox *pb, const char *fname) {
  if (m->closed || crt_rt_is_closing(m->rt))
    crt_errorf(L, fname, "the runtime is closing");
  if (!pb->p || crt_pool_closed(pb->p))
    crt_errorf(L, fname, "the pool is closed");
}

/* ---- the function cache ------------------------------------------------- */

static int fnbox_gc(lua_State *L) {
  fnbox *fb = lua_touserdata(L, 1);
  crt_fnblob_release(fb->b);
  fb->b = NULL;
  return 0;
}

typedef struct dumpstate {
  int init;
  luaL_Buffer B;
} dumpstate;

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  dumpstate *d = ud;
  if (!d->init) {
    d->init = 1;
    luaL_buffinit(L, &d->B);
  }
  luaL_addlstring(&d->B, p, n);
  return 0;
}

typedef struct fnprep {
  crt_fnblob *fn; /* NULL: the function travels in the message (a C function) */
  int nups, nvals;
  unsigned char kinds[256];
} fnprep;

/* Find or make the cache entry of the Lua function at f. */
static fnbox *blob_lookup(lua_State *L, int f);

static fnbox *blob_of(lua_State *L, tmod *m, int f) {
  const void *p = lua_topointer(L, f);
  if (p == m->last_fn)
    return m->last_fb;
  fnbox *fb = blob_lookup(L, f);
  luaL_unref(L, LUA_REGISTRYINDEX, m->last_ref);
  lua_pushvalue(L, f);
  m->last_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  m->last_fn = p;
  m->last_fb = fb;
  return fb;
}

static fnbox *blob_lookup(lua_State *L, int f) {
  int top = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &fnc_key);
  lua_pushvalue(L, f);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    fnbox *fb = lua_touserdata(L, -1);
    lua_settop(L, top);
    return fb;
  }
  lua_pop(L, 1);
  dumpstate d;
  d.init = 0;
  lua_pushvalue(L, f);
  /* With debug information: errors in the worker name lines and locals. */
  if (lua_dump(L, dump_writer, &d, 0) != 0 || !d.init)
    luaL_error(L, "crt.thread: cannot dump the function");
  luaL_pushresult(&d.B);
  lua_remove(L, -2); /* the function copy; stack: fnc, code */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &bcc_key);
  lua_pushvalue(L, -2);
  if (lua_rawget(L, -2) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    fnbox *fb = lua_newuserdatauv(L, sizeof *fb, 0);
    fb->b = NULL;
    luaL_setmetatable(L, FNBOX_MT);
    size_t len;
    const char *s = lua_tolstring(L, -3, &len);
    fb->b = crt_fnblob_new(s, len);
    if (!fb->b)
      luaL_error(L, "crt.thread: not enough memory");
    lua_Debug ar;
    lua_pushvalue(L, f);
    lua_getinfo(L, ">u", &ar);
    fb->nups = ar.nups;
    fb->simple = 1;
    for (int i = 1; i <= ar.nups; i++) {
      const char *name = lua_getupvalue(L, f, i);
      lua_pop(L, 1);
      if (!name || strcmp(name, "_ENV") != 0)
        fb->simple = 0;
    }
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4); /* bcc[code] = box */
  }
  fnbox *fb = lua_touserdata(L, -1);
  lua_pushvalue(L, f);
  lua_pushvalue(L, -2);
  lua_rawset(L, top + 1); /* fnc[fn] = box */
  lua_settop(L, top);
  return fb;
}

/* Prepare the function at f for jobs: pushes the values to send for it (its
 * VALUE upvalues, or the function itself when it is a C function). */
static void fn_prepare(lua_State *L, tmod *m, int f, fnprep *fp) {
  fp->fn = NULL;
  fp->nups = fp->nvals = 0;
  if (lua_iscfunction(L, f)) {
    lua_pushvalue(L, f);
    fp->nvals = 1;
    return;
  }
  fnbox *fb = blob_of(L, m, f);
  fp->fn = fb->b;
  fp->nups = fb->nups;
  if (fb->simple) {
    memset(fp->kinds, CRT_UPV_ENV, (size_t)fb->nups);
    return;
  }
  lua_Debug ar;
  ar.nups = (unsigned char)fb->nups;
  luaL_checkstack(L, ar.nups + 4, "crt.thread: too many upvalues");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  int g = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib"); /* the crt table */
  for (int i = 1; i <= ar.nups; i++) {
    const char *name = lua_getupvalue(L, f, i);
    if ((name && strcmp(name, "_ENV") == 0) || lua_rawequal(L, -1, g)) {
      fp->kinds[i - 1] = CRT_UPV_ENV;
      lua_pop(L, 1);
    } else if (lua_rawequal(L, -1, g + 1)) {
      /* `local crt = require "crt"`: the worker's own crt table. */
      fp->kinds[i - 1] = CRT_UPV_CRT;
      lua_pop(L, 1);
    } else if (lua_rawequal(L, -1, f)) {
      fp->kinds[i - 1] = CRT_UPV_SELF;
      lua_pop(L, 1);
    } else {
      fp->kinds[i - 1] = CRT_UPV_VALUE;
      fp->nvals++;
    }
  }
  lua_remove(L, g + 1);
  lua_remove(L, g);
}

/* Give a job the prepared function (cached mode). Raises on no memory; the
 * job is owned by a box then, so nothing leaks. */
static void job_set_fn(lua_State *L, crt_job *j, const fnprep *fp) {
  if (!fp->fn)
    return;
  j->fn = fp->fn;
  crt_fnblob_retain(fp->fn);
  j->nups = fp->nups;
  j->nvals = fp->nvals;
  if (fp->nups) {
    j->kinds = malloc((size_t)fp->nups);
    if (!j->kinds) {
      luaL_error(L, "crt.thread: not enough memory");
      return;
    }
    memcpy(j->kinds, fp->kinds, (size_t)fp->nups);
  }
}

/* Encode the value at idx alone, numbered as argument #idx, to find out
 * whether (and why) it cannot be sent. Returns 0, or 1 with the message
 * pushed. */
static int value_error(lua_State *L, int idx, const char *what) {
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
static int send_error(lua_State *L, int first, int last, const char *what) {
  for (int i = first; i <= last; i++)
    if (value_error(L, i, what))
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
    int n = crt_pool_decode(co, j->out.data, j->out.len);
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
    job_release(m, j);
    return;
  }
  if (j->kind == CRT_JOB_CALL) {
    /* run/pool:run: the task is a future (no coroutine); complete it. */
    lua_State *L = crt_lua(m->rt);
    int n = push_outcome(L, j);
    int ok = lua_toboolean(L, -n);
    lua_remove(L, -n);
    job_release(m, j);
    crt_task_complete(t, L, ok, n - 1);
    return;
  }
  /* A dedicated thread has ended: join it (it only has to return). The
   * owner's task pins the pool object, so the pool is alive. */
  if (j->kind == CRT_JOB_SPAWN)
    crt_pool_close(j->pool);
  int n = push_outcome(crt_task_co(t), j);
  job_release(m, j);
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
  fnprep fp;
  fn_prepare(L, m, f, &fp);
  luaL_checkstack(L, nargs + 4, fname);
  for (int i = 1; i <= nargs; i++)
    lua_pushvalue(L, f + i);
  if (extra) {
    lua_pushvalue(L, extra);
    lua_pushvalue(L, extra + 1);
  }
  crt_job *j = job_alloc(m);
  if (!j)
    return luaL_error(L, "%s: not enough memory", fname), NULL;
  jb->job = j;
  j->kind = kind;
  if (crt_pool_encode(L, top + 1, lua_gettop(L) - top, &j->in, what, 0) != 0)
    send_error(L, f, f + nargs, what);
  lua_settop(L, top);
  job_set_fn(L, j, &fp);
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
  check_open(L, m, pb, fname);
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
  tmod *m = mod_of(L);
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, "crt.thread.run", 1, "function");
  default_pool(L, m); /* after the arguments */
  return do_run(L, m, lua_gettop(L), 1, "crt.thread.run", "crt.thread.run: cannot send");
}

static int pool_run(lua_State *L) {
  tmod *m = mod_of(L);
  check_pool(L, "pool:run");
  lua_pushvalue(L, 1); /* the pool after the arguments */
  return do_run(L, m, lua_gettop(L), 2, "pool:run", "pool:run: cannot send");
}

/* ---- map and imap --------------------------------------------------------- */

static void progress_draw(batch *b, int final) {
  double now = (double)uv_hrtime() / 1e9;
  if (!final && now - b->last < 0.1)
    return;
  b->last = now;
  b->drawn = 1;
  double el = now - b->t0;
  double rate = el > 0 ? (double)b->idone / el : 0;
  double eta = rate > 0 ? (double)(b->nitems - b->idone) / rate : 0;
  enum { W = 30 };
  int fill = b->nitems ? (int)(W * b->idone / b->nitems) : W;
  char bar[W + 1];
  for (int i = 0; i < W; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[W] = 0;
  fprintf(stderr, "\r[%s] %lld/%lld  %.1f/s  ETA %.0fs   %s", bar, (long long)b->idone,
          (long long)b->nitems, rate, eta, final ? "\n" : "");
  fflush(stderr);
}

/* Forget a batch: outstanding jobs are detached and cancelled, jobs never
 * submitted are freed. */
static void batch_free(batch *b) {
  if (!b)
    return;
  for (int k = 0; k < b->njobs; k++) {
    crt_job *j = b->jobs[k];
    if (!j)
      continue;
    b->jobs[k] = NULL;
    if (b->submitted) {
      j->owner = NULL;
      crt_pool_cancel(j); /* may complete (and free) it right now */
    } else {
      crt_job_free(j);
    }
  }
  if (b->progress)
    progress_draw(b, 1);
  crt_shared_release(b->upv);
  lua_State *L = crt_lua(b->rt);
  luaL_unref(L, LUA_REGISTRYINDEX, b->results);
  luaL_unref(L, LUA_REGISTRYINDEX, b->err);
  free(b->jobs);
  free(b);
}

static int bbox_gc(lua_State *L) {
  bbox *bb = lua_touserdata(L, 1);
  batch *b = bb->b;
  bb->b = NULL;
  batch_free(b);
  return 0;
}

static void batch_wake(batch *b) {
  crt_task *t = b->task;
  if (t) {
    b->task = NULL;
    crt_task_wake(t, 0);
  }
}

/* The value at the top of L is the error: record it and cancel the rest. */
static void batch_fail(batch *b, lua_State *L) {
  b->failed = 1;
  b->err = luaL_ref(L, LUA_REGISTRYINDEX);
  for (int k = 0; k < b->njobs; k++) {
    crt_job *j = b->jobs[k];
    if (!j)
      continue;
    b->jobs[k] = NULL;
    j->owner = NULL;
    crt_pool_cancel(j);
  }
}

static void map_complete(crt_job *j) {
  tmod *m = j->ud;
  m->njobs--;

  batch *b = j->owner;
  if (!b) {
    job_release(m, j);
    return;
  }
  b->jobs[(j->base - 1) / b->chunk] = NULL;
  b->ndone++;
  lua_State *L = crt_lua(b->rt);
  int top = lua_gettop(L);
  lua_checkstack(L, 8);
  if (j->status == CRT_JOB_OK) {
    int n = crt_pool_decode(L, j->out.data, j->out.len);
    if (n == j->nitems) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, b->results);
      int tbl = lua_gettop(L);
      if (b->imap) {
        for (int i = 0; i < n; i++) {
          lua_Integer q = 2 * b->qtail++;
          lua_pushinteger(L, j->base + i);
          lua_rawseti(L, tbl, q + 1);
          lua_pushvalue(L, top + 1 + i);
          lua_rawseti(L, tbl, q + 2);
        }
      } else {
        for (int i = 0; i < n; i++) {
          lua_pushvalue(L, top + 1 + i);
          lua_rawseti(L, tbl, j->base + i);
        }
      }
      b->idone += n;
    } else {
      if (n >= 0)
        lua_pushliteral(L, "crt.thread: malformed results from a worker");
      batch_fail(b, L);
    }
  } else if (j->status == CRT_JOB_ERROR) {
    int n = crt_pool_decode(L, j->out.data, j->out.len);
    if (n != 1 && n >= 0)
      lua_pushliteral(L, "crt.thread: malformed error from a worker");
    batch_fail(b, L);
  } else {
    crt_sched_push_cancelled(L);
    batch_fail(b, L);
  }
  lua_settop(L, top);
  job_release(m, j);
  if (b->progress && !b->failed)
    progress_draw(b, 0);
  if (b->failed || b->ndone == b->njobs || (b->imap && b->qhead < b->qtail))
    batch_wake(b);
}

/* Build and submit the jobs of a map over the list at lidx with the
 * function at f. Returns the batch, owned by a batch box pushed on the
 * stack. */
static batch *start_map(lua_State *L, tmod *m, pbox *pb, int pbidx, int f, int imap,
                        const char *fname) {
  int lidx = f + 1, oidx = f + 2;
  char what[64];
  snprintf(what, sizeof what, "%s: cannot send", fname);
  if (lua_type(L, f) != LUA_TFUNCTION)
    crt_typeerror(L, fname, f, "function");
  if (lua_type(L, lidx) != LUA_TTABLE)
    crt_typeerror(L, fname, lidx, "table");
  lua_Integer chunk = 0;
  int progress = 0;
  if (!lua_isnoneornil(L, oidx)) {
    if (lua_type(L, oidx) != LUA_TTABLE)
      crt_typeerror(L, fname, oidx, "table");
    if (lua_getfield(L, oidx, "chunk") != LUA_TNIL) {
      int isint;
      chunk = lua_tointegerx(L, -1, &isint);
      if (!isint || chunk < 1)
        crt_argerror(L, fname, oidx, "opts.chunk must be an integer >= 1");
    }
    lua_pop(L, 1);
    lua_getfield(L, oidx, "progress");
    progress = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  check_open(L, m, pb, fname);
  lua_Integer n = (lua_Integer)lua_rawlen(L, lidx);
  int workers = crt_pool_size(pb->p);
  if (chunk == 0) {
    /* About four jobs per worker: every worker stays busy (whenever there
     * are at least as many items as workers) and uneven items even out. */
    chunk = (n + (lua_Integer)workers * 4 - 1) / ((lua_Integer)workers * 4);
    if (chunk < 1)
      chunk = 1;
  }
  if (chunk > MAX_CHUNK)
    chunk = MAX_CHUNK;
  lua_Integer njobs = n == 0 ? 0 : (n + chunk - 1) / chunk;
  if (njobs > INT32_MAX / 2)
    crt_argerror(L, fname, lidx, "list too long");

  bbox *bb = lua_newuserdatauv(L, sizeof *bb, 1);
  bb->b = NULL;
  luaL_setmetatable(L, BBOX_MT);
  lua_pushvalue(L, pbidx); /* pin the pool object (for imap) */
  lua_setiuservalue(L, -2, 1);
  batch *b = calloc(1, sizeof *b);
  if (!b) {
    luaL_error(L, "%s: not enough memory", fname);
    return NULL;
  }
  bb->b = b;
  b->m = m;
  b->rt = m->rt;
  b->results = b->err = LUA_NOREF;
  b->imap = imap;
  b->chunk = chunk;
  b->nitems = n;
  b->progress = progress && isatty(2);
  b->t0 = b->last = (double)uv_hrtime() / 1e9;
  if (njobs) {
    b->jobs = calloc((size_t)njobs, sizeof *b->jobs);
    if (!b->jobs) {
      luaL_error(L, "%s: not enough memory", fname);
      return NULL;
    }
  }
  b->njobs = (int)njobs;
  lua_createtable(L, imap ? 0 : (int)(n < INT32_MAX ? n : 0), 0);
  b->results = luaL_ref(L, LUA_REGISTRYINDEX);
  if (njobs == 0)
    return b;

  int top = lua_gettop(L);
  fnprep fp;
  fn_prepare(L, m, f, &fp);
  crt_shared *upv = NULL;
  if (fp.fn && fp.nvals > 0) {
    /* The upvalues are encoded once for all the chunks. */
    upv = b->upv = crt_shared_new();
    if (!upv)
      luaL_error(L, "%s: not enough memory", fname);
    if (crt_pool_encode(L, top + 1, fp.nvals, &upv->buf, what, 0) != 0)
      send_error(L, f, f, what);
    lua_settop(L, top);
  }
  for (lua_Integer k = 0; k < njobs; k++) {
    lua_Integer lo = k * chunk + 1, hi = lo + chunk - 1;
    if (hi > n)
      hi = n;
    crt_job *j = job_alloc(m);
    if (!j) {
      luaL_error(L, "%s: not enough memory", fname);
      return NULL;
    }
    b->jobs[k] = j;
    j->kind = CRT_JOB_MAP;
    j->base = lo;
    j->nitems = (int)(hi - lo + 1);
    j->ud = m;
    j->complete = map_complete;
    if (upv) {
      atomic_fetch_add(&upv->refs, 1);
      j->upv = upv;
    }
    int jtop = lua_gettop(L);
    luaL_checkstack(L, (int)(hi - lo) + 4, fname);
    if (!fp.fn)
      lua_pushvalue(L, top + 1); /* the C function itself */
    for (lua_Integer i = lo; i <= hi; i++)
      lua_rawgeti(L, lidx, i);
    if (crt_pool_encode(L, jtop + 1, lua_gettop(L) - jtop, &j->in, what, 0) != 0) {
      /* Name the culprit as an argument: the function, or an item of the
       * list (argument #k [i] ...). */
      if (!value_error(L, f, what))
        value_error(L, lidx, what);
      lua_error(L);
    }
    lua_settop(L, jtop);
    job_set_fn(L, j, &fp);
  }
  lua_settop(L, top);

  int rc = crt_pool_submit(pb->p, b->jobs, b->njobs);
  if (rc != 0)
    crt_errorf(L, fname, "cannot start a thread: %s",
               rc == UV_EPIPE ? "the pool is closed" : strerror(-rc));
  b->submitted = 1;
  for (int k = 0; k < b->njobs; k++)
    b->jobs[k]->owner = b;
  m->njobs += b->njobs;
  return b;
}

static void map_unpark(crt_task *t, void *data) {
  (void)t;
  batch *b = data;
  b->task = NULL;
  batch_free(b);
}

static int map_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  batch *b = (batch *)ctx;
  if (b->failed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->err);
    batch_free(b);
    return lua_error(L);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->results);
  batch_free(b);
  return 1;
}

static int do_map(lua_State *L, tmod *m, int pbidx, int f, const char *fname) {
  crt_task *t = crt_task_require(L, fname);
  batch *b = start_map(L, m, lua_touserdata(L, pbidx), pbidx, f, 0, fname);
  bbox *bb = lua_touserdata(L, -1);
  bb->b = NULL; /* from here the park protocol owns the batch */
  if (b->ndone == b->njobs) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->results);
    batch_free(b);
    return 1;
  }
  b->task = t;
  return crt_task_park(L, t, map_unpark, b, map_k, (lua_KContext)b);
}

static int l_map(lua_State *L) {
  tmod *m = mod_of(L);
  lua_settop(L, 3);
  default_pool(L, m); /* 4 */
  return do_map(L, m, 4, 1, "crt.thread.map");
}

static int pool_map(lua_State *L) {
  tmod *m = mod_of(L);
  check_pool(L, "pool:map");
  lua_settop(L, 4);
  return do_map(L, m, 1, 2, "pool:map");
}

/* imap: the batch box is the iterator's state (and its to-be-closed value). */
static int imap_step(lua_State *L, bbox *bb);

static void imap_unpark(crt_task *t, void *data) {
  (void)t;
  ((batch *)data)->task = NULL;
}

static int imap_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return imap_step(L, (bbox *)ctx);
}

static int imap_step(lua_State *L, bbox *bb) {
  batch *b = bb->b;
  if (!b)
    return 0;
  if (b->qhead < b->qtail) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->results);
    lua_Integer q = 2 * b->qhead++;
    lua_rawgeti(L, -1, q + 1);
    lua_rawgeti(L, -2, q + 2);
    lua_pushnil(L);
    lua_rawseti(L, -4, q + 1);
    lua_pushnil(L);
    lua_rawseti(L, -4, q + 2);
    if (b->qhead == b->qtail)
      b->qhead = b->qtail = 0;
    return 2;
  }
  if (b->failed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->err);
    bb->b = NULL;
    batch_free(b);
    return lua_error(L);
  }
  if (b->ndone == b->njobs) {
    bb->b = NULL;
    batch_free(b);
    return 0;
  }
  crt_task *t = crt_task_require(L, "pool:imap");
  if (b->task)
    return crt_errorf(L, "pool:imap", "the iterator is already in use by another task");
  b->task = t;
  return crt_task_park(L, t, imap_unpark, b, imap_k, (lua_KContext)bb);
}

static int imap_iter(lua_State *L) { return imap_step(L, lua_touserdata(L, lua_upvalueindex(1))); }

static int do_imap(lua_State *L, tmod *m, int pbidx, int f, const char *fname) {
  start_map(L, m, lua_touserdata(L, pbidx), pbidx, f, 1, fname);
  /* Stack: ..., batch box. Return iter, nil, nil, box (closed on break). */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, imap_iter, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, -4);
  return 4;
}

static int l_imap(lua_State *L) {
  tmod *m = mod_of(L);
  lua_settop(L, 3);
  default_pool(L, m); /* 4 */
  return do_imap(L, m, 4, 1, "crt.thread.imap");
}

static int pool_imap(lua_State *L) {
  tmod *m = mod_of(L);
  check_pool(L, "pool:imap");
  lua_settop(L, 4);
  return do_imap(L, m, 1, 2, "pool:imap");
}

/* ---- pools from Lua -------------------------------------------------------- */

static int l_pool(lua_State *L) {
  tmod *m = mod_of(L);
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
    return luaL_error(L, "%s: not enough memory", fname);
  attach_pool(pb, m, p, 0);
  return 1;
}

static int pool_close(lua_State *L) {
  pbox *pb = check_pool(L, "pool:close");
  if (pb->p)
    crt_pool_close(pb->p);
  return 0;
}

static int pool_size(lua_State *L) {
  pbox *pb = check_pool(L, "pool:size");
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
  tmod *m = mod_of(L);
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
  tmod *m = mod_of(L);
  lua_pushinteger(L, m->default_size);
  return 1;
}

static int l_stats(lua_State *L) {
  tmod *m = mod_of(L);
  int npools = 0;
  for (pbox *pb = m->pools; pb; pb = pb->next)
    if (pb->p && !crt_pool_closed(pb->p))
      npools++;
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
  for (pbox *pb = m->pools; pb; pb = pb->next)
    if (pb->p)
      crt_pool_close(pb->p);
  /* Zombies: wait for their threads; each one's exit post (run after the
   * hooks) frees it. */
  for (zombie *z = m->zombies; z; z = z->next)
    crt_pool_close(z->p);
  m->closed = 1; /* jobs that come back from now on are freed at once */
  while (m->free_jobs) {
    crt_job *j = m->free_jobs;
    m->free_jobs = j->next;
    crt_job_free(j);
  }
  m->nfree = 0;
  luaL_unref(crt_lua(m->rt), LUA_REGISTRYINDEX, m->last_ref);
  m->last_ref = LUA_NOREF;
  m->last_fn = NULL;
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

static void weak_table(lua_State *L, const void *key, const char *mode) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

int crt_open_thread(lua_State *L, crt_runtime *rt) {
  tmod *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  m->rt = rt;
  m->default_size = default_size(rt);
  m->last_ref = LUA_NOREF;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mod_key);
  crt_rt_on_close(rt, on_close, m);
  weak_table(L, &fnc_key, "k");
  weak_table(L, &bcc_key, "v");

  static const luaL_Reg pool_methods[] = {{"run", pool_run},   {"map", pool_map},
                                          {"imap", pool_imap}, {"close", pool_close},
                                          {"size", pool_size}, {NULL, NULL}};
  if (luaL_newmetatable(L, POOL_MT)) {
    lua_createtable(L, 0, 5);
    lua_pushlightuserdata(L, m);
    luaL_setfuncs(L, pool_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, pool_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, pool_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushlightuserdata(L, m);
    lua_pushcclosure(L, pool_close, 1);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, JBOX_MT)) {
    lua_pushcfunction(L, jbox_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, FNBOX_MT)) {
    lua_pushcfunction(L, fnbox_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BBOX_MT)) {
    lua_pushcfunction(L, bbox_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, bbox_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {{"run", l_run},     {"map", l_map}, {"imap", l_imap},
                                   {"pool", l_pool},   {"id", l_id},   {"size", l_size},
                                   {"stats", l_stats}, {NULL, NULL}};
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
