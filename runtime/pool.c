/*
 * pool.c - the thread pool engine: worker threads with one persistent Lua
 * state each, the job queue, running a job in a worker state (decode, call,
 * encode), cancellation of running jobs, and shutdown.
 *
 * Threads and ownership:
 * - The pool struct, its queue and the workers' `job`/`hooked` fields are
 *   shared: they change under pool->mu only.
 * - A worker's Lua state belongs to its thread. The one exception is
 *   lua_sethook, which Lua allows to be called asynchronously (lua.c does it
 *   from a signal handler): the loop thread calls it on a worker's state to
 *   cancel the running job, holding pool->mu and only while that job runs
 *   (the worker takes pool->mu to finish the job, and removes the hook
 *   itself afterwards). No hook is ever installed otherwise, so an unused
 *   cancellation costs nothing.
 * - A job belongs to the loop thread until crt_pool_submit, to the pool while
 *   queued or running, and to the loop thread again once its completion was
 *   posted (crt_rt_post: the job's embedded crt_post, no allocation).
 *
 * Errors: nothing here raises a Lua error on behalf of a caller. Loop-side
 * functions return codes; a job's failures (setup, its function's error,
 * unsendable results) travel back in the job (status and an encoded
 * message). The one raise is the cancel hook's, made by calling the
 * worker-side binding's function (CRT_POOL_CANCEL_KEY). Messages use the
 * one codec (codec.h), including its fast path for scalars and flat tables.
 * Worker states allocate with the host's crt_config.alloc when set, else
 * with a crt_arena per worker.
 *
 * Lock order: pool->mu, then a worker's tctx mutex (crt_tctx_interrupt is
 * called with pool->mu held). A worker never takes pool->mu while it runs
 * Lua code, so channel locks (taken by channel operations in worker states)
 * are never taken while pool->mu is held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "alloc.h"
#include "chan.h"
#include "codec.h"
#include "list.h"
#include "pool.h"
#include "scheduler.h"
#include "tctx.h"

enum { J_NEW, J_QUEUED, J_RUNNING, J_FINISHED };

/* Loaded functions a worker state keeps (id -> function); when the table
 * holds this many, it starts again empty. */
#define FNCACHE_MAX 256

typedef struct crt_worker {
  crt_pool *pool;
  pthread_t thread;
  int started;
  crt_tctx tctx;
  lua_State *L;    /* set under pool->mu, owned by the worker thread */
  crt_job *job;    /* under pool->mu: the job running */
  int hooked;      /* under pool->mu: a cancel hook was set on L */
  atomic_int hard; /* shutdown: the cancel hook stays until the job ends */
  int id;          /* crt.thread.id() */
  int init_failed;
  int ncached;
  size_t mem, limit; /* Lua memory in use and its limit (0 = none) */
  crt_arena *arena;  /* crt's allocator (alloc.h), used by this thread only */
  lua_Alloc halloc;  /* or the host's (crt_config.alloc), thread-safe */
  void *halloc_ud;
  int prep_failed; /* the job could not be set up: the message is on the stack */
} crt_worker;

struct crt_pool {
  crt_runtime *rt;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* workers wait here for jobs */
  crt_list queue;    /* under mu: the queued jobs, oldest first */
  int size;
  int oneshot;
  size_t memory;
  crt_pool_open_fn open;
  char *init;
  size_t init_len;
  char *init_error;    /* under mu: the first init failure */
  int started;         /* loop thread */
  int closed;          /* loop thread: crt_pool_close was called */
  int closing;         /* under mu: workers exit */
  int joined;          /* loop thread: every thread was joined */
  int nexited;         /* under mu: threads that have left their loop */
  crt_post *exit_post; /* under mu: posted when the last thread exits */
  crt_worker *workers;
};

static atomic_uint_fast64_t next_fn_id = 1;
static atomic_int next_thread_id = 1;
static atomic_int live_threads = 0;
static _Thread_local crt_worker *self_worker;

static const char fncache_key = 'F';
static const char outbox_key = 'O';

/* ---- shared pieces ------------------------------------------------------ */

crt_fnblob *crt_fnblob_new(const char *data, size_t len) {
  crt_fnblob *b = malloc(sizeof *b + len);
  if (!b)
    return NULL;
  atomic_init(&b->refs, 1);
  b->id = atomic_fetch_add(&next_fn_id, 1);
  b->len = len;
  memcpy(b->data, data, len);
  return b;
}

void crt_fnblob_retain(crt_fnblob *b) { atomic_fetch_add(&b->refs, 1); }

void crt_fnblob_release(crt_fnblob *b) {
  if (b && atomic_fetch_sub(&b->refs, 1) == 1)
    free(b);
}

crt_shared *crt_shared_new(void) {
  crt_shared *s = malloc(sizeof *s);
  if (!s)
    return NULL;
  atomic_init(&s->refs, 1);
  crt_buf_init(&s->buf);
  return s;
}

void crt_shared_release(crt_shared *s) {
  if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
    crt_buf_free(&s->buf);
    free(s);
  }
}

crt_job *crt_job_new(void) {
  crt_job *j = calloc(1, sizeof *j);
  if (!j)
    return NULL;
  crt_buf_init(&j->in);
  crt_buf_init(&j->out);
  return j;
}

void crt_job_free(crt_job *j) {
  if (!j)
    return;
  crt_buf_free(&j->in);
  crt_buf_free(&j->out);
  free(j->kinds);
  crt_fnblob_release(j->fn);
  crt_shared_release(j->upv);
  free(j);
}

int crt_pool_live_threads(void) { return atomic_load(&live_threads); }
int crt_pool_thread_id(void) { return self_worker ? self_worker->id : 0; }

int crt_pool_sleep(double seconds) {
  crt_worker *w = self_worker;
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left =
        seconds - ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9);
    if (left <= 0)
      return 0;
    if (!w) {
      struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
      nanosleep(&ts, NULL);
      continue;
    }
    /* A wake-up meant for an earlier wait (a channel) only shortens one
     * round: sleep again for what is left. */
    if (crt_tctx_wait(&w->tctx, left) < 0)
      return -1;
  }
}

/* ---- worker side: the Lua state ----------------------------------------- */

static inline void *rawalloc(crt_worker *w, void *ptr, size_t osize, size_t nsize) {
  if (w->halloc)
    return w->halloc(w->halloc_ud, ptr, osize, nsize);
  return crt_arena_alloc(w->arena, ptr, osize, nsize);
}

static void *walloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  crt_worker *w = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    rawalloc(w, ptr, osize, 0);
    w->mem -= old;
    return NULL;
  }
  if (w->limit && nsize > old && w->mem + (nsize - old) > w->limit)
    return NULL;
  void *np = rawalloc(w, ptr, osize, nsize);
  if (np)
    w->mem = w->mem - old + nsize;
  return np;
}

/* The count hook set by crt_pool_cancel: raise crt.Cancelled at the next
 * instruction, through the function the worker-side binding registered
 * (CRT_POOL_CANCEL_KEY: Lua errors are the binding's). An ordinary cancel
 * raises once (the job may catch it and clean up, as a task can); at
 * shutdown (`hard`) the hook stays, so a job that catches crt.Cancelled and
 * loops still ends. */
static void cancel_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  crt_worker *w = self_worker;
  if (!atomic_load(&w->hard)) {
    lua_sethook(L, NULL, 0, 0);
    if (atomic_load(&w->hard)) /* a shutdown came in between */
      lua_sethook(L, cancel_hook, LUA_MASKCOUNT, 1);
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, CRT_POOL_CANCEL_KEY) == LUA_TFUNCTION)
    lua_call(L, 0, 0); /* raises */
  lua_pop(L, 1);
}

/* Message handler: a string error gets this state's traceback. */
static int msgh(lua_State *L) {
  int t = lua_type(L, 1);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    return 1; /* crt.Cancelled, error objects: as they are */
  crt_worker *w = self_worker;
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, NULL, 1);
  lua_pushfstring(L, "%s\n[crt thread %d] %s", msg, w ? w->id : 0, lua_tostring(L, -1));
  return 1;
}

/* Replace out's contents with one encoded string. */
static void out_string(crt_job *j, const char *s) {
  crt_buf_reset(&j->out);
  size_t n = strlen(s);
  if (crt_codec_encode_string(&j->out, s, n) != 0) /* no memory: a shorter one */
    crt_codec_encode_string(&j->out, s, n > 200 ? 200 : n);
}

/* Push the worker's copy of the cached function (loading it once).
 * Returns 0, or -1 with the message pushed. Runs protected (memory). */
static int push_cached(lua_State *L, crt_worker *w, crt_fnblob *fb) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &fncache_key) != LUA_TTABLE || w->ncached >= FNCACHE_MAX) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &fncache_key);
    w->ncached = 0;
  }
  if (lua_rawgeti(L, -1, (lua_Integer)fb->id) == LUA_TFUNCTION) {
    lua_remove(L, -2);
    return 0;
  }
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, fb->data, fb->len, "=crt.thread", "b") != LUA_OK) {
    lua_remove(L, -2);
    return -1;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)fb->id);
  w->ncached++;
  lua_remove(L, -2);
  return 0;
}

/* Decode a job message (functions allowed: jobs come from crt itself; runs
 * protected, so the codec's fast path may allocate). */
static int decode(lua_State *L, const crt_buf *b) {
  return crt_codec_decode(L, b->data, b->len, CRT_CODEC_FUNCTIONS | CRT_CODEC_MAYRAISE);
}

/* The job (or state) could not be set up: return the message (pushed now
 * or by the failed call) as the only result, flagged for prep_status. */
static int prep_fail(lua_State *L, const char *msg) {
  if (msg)
    lua_pushstring(L, msg);
  self_worker->prep_failed = 1;
  return 1;
}

/* Inside job_body (1 = the job): push the job's function (upvalues filled)
 * and its arguments, or its items (MAP); returns how many values that is
 * (the function included). On failure it pushes the message, sets the
 * worker's prep_failed and returns 1. Raises nothing itself; only Lua's
 * memory errors can end it early. */
static int job_prepare(lua_State *L) {
  crt_job *j = lua_touserdata(L, 1);
  crt_worker *w = self_worker;
  int f, first;
  if (j->fn) {
    if (push_cached(L, w, j->fn) != 0)
      return prep_fail(L, NULL);
    f = lua_gettop(L);
    first = f + 1;
    if (j->upv && decode(L, &j->upv->buf) < 0)
      return prep_fail(L, NULL);
    if (decode(L, &j->in) < 0)
      return prep_fail(L, NULL);
    if (lua_gettop(L) - f < j->nvals)
      return prep_fail(L, "crt.thread: malformed job");
    int k = first;
    for (int i = 1; i <= j->nups; i++) {
      switch (j->kinds[i - 1]) {
      case CRT_UPV_ENV: lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); break;
      case CRT_UPV_SELF: lua_pushvalue(L, f); break;
      case CRT_UPV_CRT:
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_getfield(L, -1, "crt");
        lua_remove(L, -2);
        break;
      default: lua_pushvalue(L, k++); break;
      }
      if (!lua_setupvalue(L, f, i))
        lua_pop(L, 1);
    }
    /* Drop the upvalue values: the arguments (or items) follow f. */
    lua_rotate(L, first, -j->nvals);
    lua_pop(L, j->nvals);
  } else {
    f = lua_gettop(L) + 1;
    if (decode(L, &j->in) < 0)
      return prep_fail(L, NULL);
    if (lua_gettop(L) < f || lua_type(L, f) != LUA_TFUNCTION)
      return prep_fail(L, "crt.thread: malformed job");
  }
  if (j->kind == CRT_JOB_SPAWN) {
    /* The two mailbox channels came last: crt.parent talks through them. */
    int top = lua_gettop(L);
    if (top - f < 2)
      return prep_fail(L, "crt.thread: malformed job");
    lua_pushvalue(L, top);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &outbox_key);
    lua_getglobal(L, "crt");
    if (lua_istable(L, -1)) {
      lua_createtable(L, 0, 2);
      lua_pushvalue(L, top - 1);
      lua_setfield(L, -2, "inbox");
      lua_pushvalue(L, top);
      lua_setfield(L, -2, "outbox");
      lua_setfield(L, -2, "_mailbox");
    }
    lua_settop(L, top - 2);
  }
  return lua_gettop(L) - 1;
}

/* Protected (lua_pcall, 1 = the job): prepare the job, then call its
 * function (CALL, SPAWN: all its results) or call it on each item (MAP: one
 * result per item). A failed setup returns its message, flagged. */
static int job_body(lua_State *L) {
  crt_job *j = lua_touserdata(L, 1);
  int n = job_prepare(L);
  if (self_worker->prep_failed)
    return n;
  int f = lua_gettop(L) - n + 1;
  if (j->kind == CRT_JOB_MAP) {
    n--;
    if (!lua_checkstack(L, 3))
      return prep_fail(L, "stack overflow (crt.thread.map)");
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(L, f);
      lua_pushvalue(L, f + i);
      lua_call(L, 1, 1);
      lua_replace(L, f + i);
    }
    return n;
  }
  lua_call(L, n - 1, LUA_MULTRET);
  return lua_gettop(L) - f + 1;
}

/* Close the mailbox to the parent after a dedicated thread's function ended,
 * so that worker:recv() returns nil once the messages are drained. */
static void close_outbox(lua_State *L) {
  lua_pushcfunction(L, msgh);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &outbox_key) != LUA_TNIL &&
      lua_getfield(L, -1, "close") == LUA_TFUNCTION) {
    lua_insert(L, -2);
    lua_pcall(L, 1, 0, -3);
  }
  lua_settop(L, 0);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &outbox_key);
}

/* The status of a protected setup (job_prepare, open_state) that returned:
 * LUA_OK, or, when it failed with its message alone on the stack, that
 * message with the traceback as an error in Lua code would have it
 * (LUA_ERRRUN; LUA_ERRMEM when even that fails). */
static int prep_status(lua_State *L, crt_worker *w) {
  if (!w->prep_failed)
    return LUA_OK;
  w->prep_failed = 0;
  lua_pushcfunction(L, msgh);
  lua_insert(L, -2);
  return lua_pcall(L, 1, 1, 0) == LUA_OK ? LUA_ERRRUN : LUA_ERRMEM;
}

static void run_job(crt_worker *w, crt_job *j) {
  lua_State *L = w->L;
  crt_buf_reset(&j->out);
  if (w->init_failed || !L) {
    crt_pool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    const char *e = p->init_error ? p->init_error : "no Lua state";
    char *msg = malloc(strlen(e) + 64);
    if (msg)
      sprintf(msg, "crt.thread.pool: init failed: %s", e);
    pthread_mutex_unlock(&p->mu);
    j->status = CRT_JOB_ERROR;
    out_string(j, msg ? msg : "crt.thread.pool: init failed");
    free(msg);
    return;
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, job_body);
  lua_pushlightuserdata(L, j);
  w->prep_failed = 0;
  int st = lua_pcall(L, 1, LUA_MULTRET, 1);
  if (st == LUA_OK)
    st = prep_status(L, w);
  if (st == LUA_OK) {
    int n = lua_gettop(L) - 1;
    if (crt_codec_encode(L, 2, n, &j->out, 0, "crt.thread: cannot return", 0) == 0) {
      j->status = CRT_JOB_OK;
    } else {
      /* An unsendable result: the job fails with the codec's message. */
      j->status = CRT_JOB_ERROR;
      out_string(j, lua_tostring(L, -1));
    }
  } else if (st == LUA_ERRMEM) {
    j->status = CRT_JOB_ERROR;
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    char msg[96];
    snprintf(msg, sizeof msg, "not enough memory (in crt thread %d)", w->id);
    out_string(j, msg);
  } else if (crt_sched_is_cancelled(L, -1)) {
    j->status = CRT_JOB_CANCELLED;
  } else {
    j->status = CRT_JOB_ERROR;
    if (crt_codec_encode(L, -1, 1, &j->out, 0, "crt.thread: cannot send the error", 0) != 0) {
      lua_pop(L, 1);
      char msg[96];
      snprintf(msg, sizeof msg, "(error object is a %s value, in crt thread %d)",
               luaL_typename(L, -1), w->id);
      out_string(j, msg);
    }
  }
  if (j->kind == CRT_JOB_SPAWN)
    close_outbox(L);
  lua_settop(L, 0);
}

/* Protected: the standard library, the crt API and the init function. */
static int open_state(lua_State *L) {
  crt_worker *w = self_worker;
  crt_pool *p = w->pool;
  luaL_openlibs(L);
  if (p->open && p->open(L, w->id) != 0)
    return prep_fail(L, NULL);
  if (p->init) {
    int n = crt_codec_decode(L, p->init, p->init_len, CRT_CODEC_FUNCTIONS);
    if (n < 0)
      return prep_fail(L, NULL);
    lua_call(L, n - 1, 0);
  }
  return 0;
}

static void init_failed(crt_worker *w, const char *msg) {
  crt_pool *p = w->pool;
  w->init_failed = 1;
  pthread_mutex_lock(&p->mu);
  if (!p->init_error)
    p->init_error = strdup(msg ? msg : "unknown error");
  pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg) {
  crt_worker *w = arg;
  crt_pool *p = w->pool;
  self_worker = w;
  crt_tctx_enter(&w->tctx);
  const crt_config *cfg = crt_rt_config(p->rt);
  w->halloc = cfg->alloc;
  w->halloc_ud = cfg->alloc_ud;
  w->arena = w->halloc ? NULL : crt_arena_new();
  lua_State *L = (w->halloc || w->arena) ? lua_newstate(walloc, w) : NULL;
  if (!L) {
    init_failed(w, "cannot create a Lua state (out of memory)");
  } else {
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, open_state);
    w->prep_failed = 0;
    int st = lua_pcall(L, 0, 1, 1);
    if (st == LUA_OK)
      st = prep_status(L, w);
    if (st != LUA_OK)
      init_failed(w, lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error object");
    lua_settop(L, 0);
  }
  crt_job *last = NULL; /* a dedicated thread posts its job after closing */
  pthread_mutex_lock(&p->mu);
  w->L = L;
  for (;;) {
    while (crt_list_empty(&p->queue) && !p->closing)
      pthread_cond_wait(&p->cv, &p->mu);
    if (p->closing)
      break;
    crt_link *l = crt_list_pop(&p->queue);           /* not inside crt_container_of: */
    crt_job *j = crt_container_of(l, crt_job, link); /* it reads l twice */
    j->state = J_RUNNING;
    j->w = w;
    w->job = j;
    pthread_mutex_unlock(&p->mu);

    run_job(w, j);

    pthread_mutex_lock(&p->mu);
    w->job = NULL;
    j->w = NULL;
    j->state = J_FINISHED;
    int hooked = w->hooked;
    w->hooked = 0;
    pthread_mutex_unlock(&p->mu);
    /* No cancel can target this state now: remove what one may have set. */
    if (hooked && L)
      lua_sethook(L, NULL, 0, 0);
    crt_tctx_clear_interrupt(&w->tctx);
    if (p->oneshot) {
      last = j;
      pthread_mutex_lock(&p->mu);
      break;
    }
    crt_rt_post(p->rt, &j->post);
    pthread_mutex_lock(&p->mu);
  }
  w->L = NULL;
  pthread_mutex_unlock(&p->mu);
  if (L)
    lua_close(L);
  crt_arena_free(w->arena);
  w->arena = NULL;
  crt_chan_thread_cleanup();
  crt_tctx_enter(NULL);
  self_worker = NULL;
  crt_runtime *rt = p->rt;
  pthread_mutex_lock(&p->mu);
  crt_post *exit_post = ++p->nexited == p->size ? p->exit_post : NULL;
  pthread_mutex_unlock(&p->mu);
  /* From here on the pool may be freed (by the exit post's handler): touch
   * only the job and the runtime. */
  if (last)
    crt_rt_post(rt, &last->post);
  if (exit_post)
    crt_rt_post(rt, exit_post);
  return NULL;
}

/* ---- loop side -------------------------------------------------------- */

crt_pool *crt_pool_new(crt_runtime *rt, const crt_pool_config *cfg) {
  crt_pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->rt = rt;
  p->size = cfg->size > 0 ? cfg->size : 1;
  p->oneshot = cfg->oneshot;
  p->memory = cfg->memory;
  p->open = cfg->open;
  if (cfg->init && cfg->init_len) {
    p->init = malloc(cfg->init_len);
    if (!p->init) {
      free(p);
      return NULL;
    }
    memcpy(p->init, cfg->init, cfg->init_len);
    p->init_len = cfg->init_len;
  }
  p->workers = calloc((size_t)p->size, sizeof *p->workers);
  if (!p->workers) {
    free(p->init);
    free(p);
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  return p;
}

int crt_pool_size(crt_pool *p) { return p->size; }
int crt_pool_closed(crt_pool *p) { return p->closed; }

const char *crt_pool_init_error(crt_pool *p) {
  pthread_mutex_lock(&p->mu);
  const char *e = p->init_error;
  pthread_mutex_unlock(&p->mu);
  return e;
}

static int start(crt_pool *p) {
  int nstarted = 0, err = 0;
  for (int i = 0; i < p->size; i++) {
    crt_worker *w = &p->workers[i];
    w->pool = p;
    w->id = atomic_fetch_add(&next_thread_id, 1);
    w->limit = p->memory;
    atomic_init(&w->hard, 0);
    if (crt_tctx_init(&w->tctx) != 0) {
      err = ENOMEM;
      break;
    }
    err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err) {
      crt_tctx_destroy(&w->tctx);
      break;
    }
    w->started = 1;
    atomic_fetch_add(&live_threads, 1);
    nstarted++;
  }
  if (nstarted == 0)
    return -(err ? err : EAGAIN);
  pthread_mutex_lock(&p->mu); /* the workers read size when they exit */
  p->size = nstarted;         /* fewer threads than asked rather than none */
  pthread_mutex_unlock(&p->mu);
  p->started = 1;
  return 0;
}

static void job_posted(crt_post *post) {
  crt_job *j = (crt_job *)post;
  crt_runtime *rt = j->rt;
  crt_rt_hold(rt, -1);
  if (j->complete)
    j->complete(j);
  else
    crt_job_free(j);
}

int crt_pool_submit(crt_pool *p, crt_job **jobs, int n) {
  if (p->closed)
    return UV_EPIPE;
  if (!p->started) {
    int rc = start(p);
    if (rc)
      return rc;
  }
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < n; i++) {
    crt_job *j = jobs[i];
    j->pool = p;
    j->rt = p->rt;
    j->post.fn = job_posted;
    j->state = J_QUEUED;
    crt_list_push(&p->queue, &j->link);
  }
  if (n == 1)
    pthread_cond_signal(&p->cv);
  else
    pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  crt_rt_hold(p->rt, n);
  return 0;
}

/* pool->mu held: interrupt the job a worker runs. */
static void interrupt(crt_worker *w, int hard) {
  if (hard)
    atomic_store(&w->hard, 1);
  if (w->L) {
    w->hooked = 1;
    lua_sethook(w->L, cancel_hook, LUA_MASKCOUNT, 1);
  }
  crt_tctx_interrupt(&w->tctx);
}

static void drop(crt_job *j) {
  j->status = CRT_JOB_DROPPED;
  crt_buf_reset(&j->out);
  job_posted(&j->post);
}

void crt_pool_cancel(crt_job *j) {
  crt_pool *p = j->pool;
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  if (j->state == J_QUEUED) {
    crt_list_remove(&p->queue, &j->link);
    j->state = J_FINISHED;
    pthread_mutex_unlock(&p->mu);
    drop(j);
    return;
  }
  if (j->state == J_RUNNING && j->w && j->w->job == j)
    interrupt(j->w, 0);
  pthread_mutex_unlock(&p->mu);
}

void crt_pool_shutdown(crt_pool *p) {
  if (p->closed)
    return;
  p->closed = 1;
  pthread_mutex_lock(&p->mu);
  p->closing = 1;
  crt_list dropped = p->queue;
  p->queue = (crt_list)CRT_LIST_INIT;
  for (crt_link *l = dropped.head; l; l = l->next)
    crt_container_of(l, crt_job, link)->state = J_FINISHED;
  if (p->started)
    for (int i = 0; i < p->size; i++)
      if (p->workers[i].started && p->workers[i].job)
        interrupt(&p->workers[i], 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  crt_link *l;
  while ((l = crt_list_pop(&dropped)))
    drop(crt_container_of(l, crt_job, link));
}

static void join_all(crt_pool *p) {
  for (int i = 0; i < p->size; i++) {
    crt_worker *w = &p->workers[i];
    if (!w->started)
      continue;
    pthread_join(w->thread, NULL);
    crt_tctx_destroy(&w->tctx);
    w->started = 0;
    atomic_fetch_sub(&live_threads, 1);
  }
  p->joined = 1;
}

int crt_pool_abandon(crt_pool *p, crt_post *post) {
  crt_pool_shutdown(p);
  if (!p->started || p->joined)
    return 1;
  pthread_mutex_lock(&p->mu);
  int all_out = p->nexited == p->size;
  if (!all_out)
    p->exit_post = post;
  pthread_mutex_unlock(&p->mu);
  return all_out;
}

void crt_pool_close(crt_pool *p) {
  crt_pool_shutdown(p);
  if (p->started && !p->joined)
    join_all(p);
}

void crt_pool_free(crt_pool *p) {
  if (!p)
    return;
  crt_pool_close(p);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->init_error);
  free(p->init);
  free(p->workers);
  free(p);
}
