/*
 * thread_map.c - crt.thread.map and crt.thread.imap (and the pool methods
 * map and imap): a list cut into chunks, one job per chunk on a pool, the
 * results gathered in order (map) or handed out as they come (imap), and
 * the progress bar on stderr.
 *
 * Loop thread only (the main state). A batch (the map in flight) is owned
 * by a Lua box while it is built, then by the waiting task's park (map) or
 * by the iterator's box (imap); forgetting it detaches and cancels the jobs
 * still out. Jobs come back through map_complete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <uv.h>

#include "codec.h"
#include "pool.h"
#include "scheduler.h"
#include "thread.h"
#include "util.h"

#define BBOX_MT "crt.thread.batch"
#define MAX_CHUNK 100000

/* A map or imap in flight. */
typedef struct batch {
  crt_tmod *m;
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
  lua_State *L = b->m->L;
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
  crt_tmod *m = j->ud;
  m->njobs--;

  batch *b = j->owner;
  if (!b) {
    crt_thread_job_release(m, j);
    return;
  }
  b->jobs[(j->base - 1) / b->chunk] = NULL;
  b->ndone++;
  lua_State *L = b->m->L;
  int top = lua_gettop(L);
  lua_checkstack(L, 8);
  if (j->status == CRT_JOB_OK) {
    int n = crt_codec_decode(L, j->out.data, j->out.len, CRT_CODEC_FUNCTIONS | CRT_CODEC_MAYRAISE);
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
    int n = crt_codec_decode(L, j->out.data, j->out.len, CRT_CODEC_FUNCTIONS | CRT_CODEC_MAYRAISE);
    if (n != 1 && n >= 0)
      lua_pushliteral(L, "crt.thread: malformed error from a worker");
    batch_fail(b, L);
  } else {
    crt_sched_push_cancelled(L);
    batch_fail(b, L);
  }
  lua_settop(L, top);
  crt_thread_job_release(m, j);
  if (b->progress && !b->failed)
    progress_draw(b, 0);
  if (b->failed || b->ndone == b->njobs || (b->imap && b->qhead < b->qtail))
    batch_wake(b);
}

/* Build and submit the jobs of a map over the list at lidx with the
 * function at f. Returns the batch, owned by a batch box pushed on the
 * stack. */
static batch *start_map(lua_State *L, crt_tmod *m, crt_pbox *pb, int pbidx, int f, int imap,
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
  crt_thread_check_open(L, m, pb, fname);
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
    crt_errorf(L, fname, "not enough memory");
    return NULL;
  }
  bb->b = b;
  b->m = m;
  b->results = b->err = LUA_NOREF;
  b->imap = imap;
  b->chunk = chunk;
  b->nitems = n;
  b->progress = progress && isatty(2);
  b->t0 = b->last = (double)uv_hrtime() / 1e9;
  if (njobs) {
    b->jobs = calloc((size_t)njobs, sizeof *b->jobs);
    if (!b->jobs) {
      crt_errorf(L, fname, "not enough memory");
      return NULL;
    }
  }
  b->njobs = (int)njobs;
  lua_createtable(L, imap ? 0 : (int)(n < INT32_MAX ? n : 0), 0);
  b->results = luaL_ref(L, LUA_REGISTRYINDEX);
  if (njobs == 0)
    return b;

  int top = lua_gettop(L);
  crt_fnprep fp;
  crt_thread_fn_prepare(L, m, f, &fp);
  crt_shared *upv = NULL;
  if (fp.fn && fp.nvals > 0) {
    /* The upvalues are encoded once for all the chunks. */
    upv = b->upv = crt_shared_new();
    if (!upv)
      crt_errorf(L, fname, "not enough memory");
    if (crt_codec_encode(L, top + 1, fp.nvals, &upv->buf, 0, what, 0) != 0)
      crt_thread_send_error(L, f, f, what);
    lua_settop(L, top);
  }
  for (lua_Integer k = 0; k < njobs; k++) {
    lua_Integer lo = k * chunk + 1, hi = lo + chunk - 1;
    if (hi > n)
      hi = n;
    crt_job *j = crt_thread_job_alloc(m);
    if (!j) {
      crt_errorf(L, fname, "not enough memory");
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
    if (crt_codec_encode(L, jtop + 1, lua_gettop(L) - jtop, &j->in, 0, what, 0) != 0) {
      /* Name the culprit as an argument: the function, or an item of the
       * list (argument #k [i] ...). */
      if (!crt_thread_value_error(L, f, what))
        crt_thread_value_error(L, lidx, what);
      lua_error(L);
    }
    lua_settop(L, jtop);
    crt_thread_job_set_fn(L, j, &fp);
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

static int do_map(lua_State *L, crt_tmod *m, int pbidx, int f, const char *fname) {
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

int crt_thread_l_map(lua_State *L) {
  crt_tmod *m = crt_thread_mod(L);
  lua_settop(L, 3);
  crt_thread_default_pool(L, m); /* 4 */
  return do_map(L, m, 4, 1, "crt.thread.map");
}

int crt_thread_pool_map(lua_State *L) {
  crt_tmod *m = crt_thread_mod(L);
  crt_thread_check_pool(L, "pool:map");
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

static int do_imap(lua_State *L, crt_tmod *m, int pbidx, int f, const char *fname) {
  start_map(L, m, lua_touserdata(L, pbidx), pbidx, f, 1, fname);
  /* Stack: ..., batch box. Return iter, nil, nil, box (closed on break). */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, imap_iter, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, -4);
  return 4;
}

int crt_thread_l_imap(lua_State *L) {
  crt_tmod *m = crt_thread_mod(L);
  lua_settop(L, 3);
  crt_thread_default_pool(L, m); /* 4 */
  return do_imap(L, m, 4, 1, "crt.thread.imap");
}

int crt_thread_pool_imap(lua_State *L) {
  crt_tmod *m = crt_thread_mod(L);
  crt_thread_check_pool(L, "pool:imap");
  lua_settop(L, 4);
  return do_imap(L, m, 1, 2, "pool:imap");
}

void crt_thread_map_open(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", bbox_gc}, {"__close", bbox_gc}, {NULL, NULL}};
  crt_newclass(L, BBOX_MT, NULL, meta, 0);
}
