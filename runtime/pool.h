/*
 * pool.h - the thread pool engine: OS threads (pthreads), each owning one
 * persistent Lua state, a FIFO of jobs, and the way finished jobs get back to
 * the loop thread (crt_rt_post).
 *
 * Threads: crt_pool_new, crt_pool_submit, crt_pool_cancel, crt_pool_close and
 * crt_pool_free are called on the loop thread only. A job's `complete`
 * callback runs on the loop thread. Everything else in pool.c runs on the
 * worker threads, each touching its own Lua state.
 *
 * A job carries its function either as a reference to a cached bytecode blob
 * (crt_fnblob: dumped once in the main state, loaded once per worker state)
 * plus the values of its upvalues, or, for C functions of the standard
 * library, inside the codec message itself. See "Job input" below.
 */
#ifndef CRT_POOL_H
#define CRT_POOL_H

#include <lua.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "list.h"
#include "rt.h"

typedef struct crt_pool crt_pool;
typedef struct crt_job crt_job;

/* The bytecode of a Lua function, dumped once in the main state and shared
 * read-only by every worker (reference counted). `id` is unique in the
 * process: a worker state caches the function it loaded under it. */
typedef struct crt_fnblob {
  atomic_int refs;
  uint64_t id;
  size_t len;
  char data[];
} crt_fnblob;

crt_fnblob *crt_fnblob_new(const char *data, size_t len); /* refs = 1 */
void crt_fnblob_retain(crt_fnblob *b);
void crt_fnblob_release(crt_fnblob *b);

/* An immutable encoded message shared by several jobs (the upvalues of the
 * function of a map, encoded once for all its chunks). */
typedef struct crt_shared {
  atomic_int refs;
  crt_buf buf;
} crt_shared;

crt_shared *crt_shared_new(void); /* refs = 1, empty buffer */
void crt_shared_release(crt_shared *s);

/* What a job does with its function. */
enum {
  CRT_JOB_CALL = 0, /* fn(args...) -> all its results */
  CRT_JOB_MAP = 1,  /* fn(item) for each item -> one result per item */
  CRT_JOB_SPAWN = 2 /* as CALL, with the two mailbox channels last (dedicated thread) */
};

/* How a job ended (crt_job.status). */
enum {
  CRT_JOB_OK = 0,        /* out: the results */
  CRT_JOB_ERROR = 1,     /* out: the error value (a string carries the traceback) */
  CRT_JOB_CANCELLED = 2, /* crt.Cancelled was raised in the worker */
  CRT_JOB_DROPPED = 3    /* never ran: cancelled while queued, or the pool closed */
};

/* Upvalue kinds, one byte each in the job input header. */
enum {
  CRT_UPV_VALUE = 0, /* the next value of the upvalue message */
  CRT_UPV_ENV = 1,   /* the receiving state's globals */
  CRT_UPV_SELF = 2,  /* the function itself (a recursive local function) */
  CRT_UPV_CRT = 3    /* the crt table: the receiving state's own crt table */
};

/*
 * Job input. `fn` NULL: `in` holds the function as its first value (a C
 * function sent by name, or an init/spawn function encoded whole), followed by
 * the arguments. `fn` set: `kinds` (nups bytes, malloc'd) says how to fill
 * each upvalue of the cached function; the VALUE upvalues come first in
 * `upv` (when set) or else first in `in`, followed by the arguments or the
 * items.
 */
struct crt_job {
  crt_post post; /* first: the completion travels to the loop thread in it */
  crt_link link; /* in the pool's queue (under its lock), or a binding's free list */
  crt_pool *pool;
  crt_runtime *rt; /* the completion may outlive the pool (a dedicated thread) */
  int kind;
  int status;
  crt_fnblob *fn;
  unsigned char *kinds;
  int nups;
  int nvals; /* VALUE upvalues, counted in upv or in */
  crt_shared *upv;
  crt_buf in;
  crt_buf out;
  int state; /* under pool->mu: queued, running, finished */
  struct crt_worker *w;
  /* Loop thread only: who waits for this job (NULL once detached: the job is
   * then freed when it comes back), called when it comes back. */
  void (*complete)(crt_job *j);
  void *owner;
  void *ud;         /* for the binding (never touched by the engine) */
  lua_Integer base; /* map: index of the first item */
  int nitems;       /* map: how many items */
};

/* A new job (zeroed, buffers initialised) and its release (buffers, kinds,
 * references). Loop thread. */
crt_job *crt_job_new(void);
void crt_job_free(crt_job *j);

/* Called in each new worker state (on the worker thread), with the standard
 * library open: installs the worker-side crt API. id is the worker's
 * crt.thread.id(). Returns 0, or -1 with an error message pushed. */
typedef int (*crt_pool_open_fn)(lua_State *L, int id);

/* Registry key (worker states) of the function that raises crt.Cancelled:
 * the `open` function of the worker-side API sets it, and the pool's cancel
 * hook calls it to interrupt running Lua code. Without it a running job is
 * interrupted only in its blocking waits. */
#define CRT_POOL_CANCEL_KEY "crt.pool.cancel"

typedef struct crt_pool_config {
  int size;              /* number of threads (>= 1) */
  int oneshot;           /* a dedicated thread: it runs one job, then exits */
  size_t memory;         /* per-worker Lua memory limit in bytes; 0 = none */
  crt_pool_open_fn open; /* installs the worker-side API */
  const char *init;      /* encoded init function (a codec message) or NULL */
  size_t init_len;
} crt_pool_config;

/* A pool of cfg->size threads that start on the first submit. NULL when out
 * of memory. Worker states use the runtime's crt_config.alloc when set, else
 * crt's own allocator (alloc.h). Loop thread. */
crt_pool *crt_pool_new(crt_runtime *rt, const crt_pool_config *cfg);

/* Queue jobs (n >= 1), starting the threads on first use. Each job keeps
 * the loop alive (crt_rt_hold) until its `complete` has run. Returns 0, or a
 * negative libuv-style error (UV_EPIPE: the pool is closed; or the error of
 * pthread_create as -errno) with nothing queued. Loop thread. */
int crt_pool_submit(crt_pool *p, crt_job **jobs, int n);

/* Cancel a job that was submitted and has not come back. A queued job is
 * removed and completed at once with CRT_JOB_DROPPED (its `complete` runs
 * before this returns). A running job is interrupted at its next Lua
 * instruction (a count hook set on the worker's state now, and only now) and
 * in any blocking wait (its tctx); it comes back later as usual. Loop thread.
 */
void crt_pool_cancel(crt_job *j);

/* Stop the pool: queued jobs are dropped (completed with CRT_JOB_DROPPED),
 * running ones interrupted, threads joined, worker states closed. Running
 * jobs come back through crt_rt_post as usual. Idempotent. Loop thread. */
void crt_pool_close(crt_pool *p);
int crt_pool_closed(crt_pool *p);
/* crt_pool_close without the join: threads exit on their own (a running
 * job first comes back through crt_rt_post). */
void crt_pool_shutdown(crt_pool *p);
/* Shut down a pool nobody will use again, without waiting for its threads
 * (a collected pool object). Returns 1 when no thread is left running: free
 * it now. Returns 0 when `post` will be posted to the loop once the last
 * thread has exited: its handler then frees the pool (crt_pool_free joins
 * threads that have already returned). */
int crt_pool_abandon(crt_pool *p, crt_post *post);
/* Close (waiting for the threads), then free the pool. */
void crt_pool_free(crt_pool *p);

int crt_pool_size(crt_pool *p);
/* The first init error (message with traceback), or NULL. Loop thread. */
const char *crt_pool_init_error(crt_pool *p);
/* Threads started and not joined, over all pools of the process. */
int crt_pool_live_threads(void);

/* The crt.thread.id() of the calling thread: 0 on a loop thread. */
int crt_pool_thread_id(void);

/* Worker side (bindings/worker.c): wait on the calling worker's waiting
 * context for `seconds`; returns 0, or -1 when interrupted (cancelled). On a
 * thread that is not a worker, sleeps without interruption. */
int crt_pool_sleep(double seconds);

#endif
