/*
 * thread.h - the Lua bindings of threads: crt.thread in the main state
 * (bindings/thread.c: run, pool objects, spawn, id/size/stats;
 * bindings/thread_map.c: map and imap) and the crt table of worker states
 * (bindings/worker.c).
 *
 * The second half is internal to bindings/thread*.c: the per-runtime module
 * state and the helpers that thread_map.c shares with thread.c. Loop thread
 * only.
 */
#ifndef CRT_THREAD_H
#define CRT_THREAD_H

#include <lua.h>

#include "fncache.h"
#include "list.h"
#include "pool.h"

struct crt_runtime;

/* Set crt.thread on the crt table at the top of L's stack (the main state of
 * rt; loop thread). Registers rt's shutdown hook for its pools. */
int crt_open_thread(lua_State *L, struct crt_runtime *rt);

/* Worker thread: install the worker-side crt table (global crt and
 * require "crt") in a fresh worker state. A crt_pool_open_fn. */
int crt_open_worker(lua_State *L, int id);

/* ---- internal to bindings/thread.c and bindings/thread_map.c ------------- */

#define CRT_THREAD_POOL_MT "crt.thread.pool"

/* Per runtime: the pools (closed at shutdown) and the jobs out. */
typedef struct crt_tmod {
  struct crt_runtime *rt;
  lua_State *L;   /* the main state */
  crt_list pools; /* crt_pbox.link */
  int default_size;
  int closed;
  lua_Integer njobs;
  /* Finished jobs kept for reuse (with their buffers): no malloc per job. */
  crt_list free_jobs; /* crt_job.link */
  int nfree;
  crt_fncache fncache;
  crt_list zombies; /* collected pools whose threads are not joined yet */
} crt_tmod;

/* The Lua object of a pool (also of a dedicated thread's pool of one). */
typedef struct crt_pbox {
  crt_pool *p;
  crt_tmod *m;
  crt_link link; /* in m->pools while linked */
  int linked;
  int oneshot;
} crt_pbox;

/* The module of the calling function (upvalue 1). */
static inline crt_tmod *crt_thread_mod(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* A job, reused from the free list when one is there; its release. */
crt_job *crt_thread_job_alloc(crt_tmod *m);
void crt_thread_job_release(crt_tmod *m, crt_job *j);

/* Argument 1 as a pool object (not a dedicated thread's), else raise. */
crt_pbox *crt_thread_check_pool(lua_State *L, const char *fname);
/* Push the default pool object, creating it (not its threads) first. */
crt_pbox *crt_thread_default_pool(lua_State *L, crt_tmod *m);
/* Raise when the runtime is closing or the pool is closed. */
void crt_thread_check_open(lua_State *L, crt_tmod *m, crt_pbox *pb, const char *fname);

/* crt_fncache_prepare / crt_fncache_set_job, raising their errors. */
void crt_thread_fn_prepare(lua_State *L, crt_tmod *m, int f, crt_fnprep *fp);
void crt_thread_job_set_fn(lua_State *L, crt_job *j, const crt_fnprep *fp);

/* Encode the value at idx alone, numbered as argument #idx, to find out
 * whether (and why) it cannot be sent. Returns 0, or 1 with the message
 * pushed. */
int crt_thread_value_error(lua_State *L, int idx, const char *what);
/* The message is at the top: name the argument in first..last that cannot
 * be sent when one can be found, and raise. */
int crt_thread_send_error(lua_State *L, int first, int last, const char *what);

/* crt.thread.map/imap and pool:map/imap (bindings/thread_map.c). */
int crt_thread_l_map(lua_State *L);
int crt_thread_pool_map(lua_State *L);
int crt_thread_l_imap(lua_State *L);
int crt_thread_pool_imap(lua_State *L);
/* Register the batch class (thread_map.c). */
void crt_thread_map_open(lua_State *L);

#endif
