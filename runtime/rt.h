/*
 * rt.h - the runtime object as the bindings and the CLI see it: an opaque
 * struct crt_runtime (its fields are the engine's own, in rt_impl.h) with
 * named accessors, cross-thread posts and holds, shutdown hooks, logging,
 * and the engine's constructor crt_rt_new.
 *
 * Loop thread only (the thread that called crt_open or luaopen_crt), except
 * crt_rt_post (any thread).
 */
#ifndef CRT_RT_H
#define CRT_RT_H

#include <lua.h>
#include <uv.h>
#include "include/crt.h"
#include "timer.h"

struct crt_task;

/* Work posted to the loop thread from any thread (see crt_rt_post). The
 * struct is embedded in the poster's own object: posting allocates nothing. */
typedef struct crt_post {
  struct crt_post *next;
  void (*fn)(struct crt_post *p); /* runs on the loop thread */
} crt_post;

/*
 * Handles of the bindings. Every libuv handle a binding opens on the loop
 * has as `data` a pointer to a struct whose FIRST member is a
 * crt_handle_close_fn. At shutdown (crt_close, crt.exit, the end of a
 * script) the runtime first cancels every task (so blocked calls unpark and
 * clean up), then calls that function for each handle still open: it must
 * uv_close the handle with the binding's own close callback, which frees
 * what libuv used. A Lua finalizer that runs later (lua_close) must see that
 * the handle is already closed and do nothing with the loop.
 */
typedef void (*crt_handle_close_fn)(uv_handle_t *h);

/* Create a runtime on L's main state (which has the standard library): its
 * loop, scheduler and timers, registered in L's registry so that crt_rt_get
 * finds it. It pushes nothing and registers no Lua function: the bindings
 * (crt_open, luaopen_crt) then build the crt table. config NULL = defaults.
 * owns_state: crt_close closes L (crt_open), else L belongs to the host Lua
 * (module mode). Returns NULL when memory or the loop cannot be had. */
struct crt_runtime *crt_rt_new(lua_State *L, const crt_config *config, int owns_state);
/* Everything crt_close does but closing the Lua state and freeing rt: cancel
 * the tasks, run the close hooks, close the loop. Returns the exit status
 * (70 when a libuv handle was left open; see crt.h). Idempotent. */
int crt_rt_shutdown(struct crt_runtime *rt);
/* Run the loop until task t has finished (crt.run in module mode). Returns
 * 0, CRT_EEXIT after crt.exit, or CRT_EDEADLOCK. */
int crt_rt_run_until(struct crt_runtime *rt, struct crt_task *t);

/* The runtime of a state that loaded crt (upvalue-free lookup through the
 * registry; bindings cache it in an upvalue). NULL in a worker state. */
struct crt_runtime *crt_rt_get(lua_State *L);

/* Any thread: run p->fn(p) on rt's loop thread soon. Posts run in order,
 * in one batch per loop iteration (libuv coalesces the async sends). */
void crt_rt_post(struct crt_runtime *rt, crt_post *p);
/* Loop thread: count work that another thread will post back (a job out
 * on the pool, a task parked on a channel shared with threads); while the
 * count is > 0 the loop stays alive instead of reporting a deadlock. */
void crt_rt_hold(struct crt_runtime *rt, int delta);
/* True on rt's loop thread. */
int crt_rt_on_loop_thread(struct crt_runtime *rt);
/* Loop thread: call fn(ud) at shutdown, after every task was cancelled and
 * before the loop's handles are closed (stop and join threads, reap
 * children). Hooks run in reverse order of registration. */
int crt_rt_on_close(struct crt_runtime *rt, void (*fn)(void *ud), void *ud);

/* Record and log an error (message with traceback). level: CRT_LOG_*. */
void crt_rt_log(struct crt_runtime *rt, crt_log_level level, const char *msg);
void crt_rt_set_error(struct crt_runtime *rt, const char *msg);

/* ---- named access for the bindings and the CLI ---------------------------
 * The bindings change the runtime only through these (the struct is the
 * engine's own, in rt_impl.h; see docs/architecture.md). */

uv_loop_t *crt_rt_loop(struct crt_runtime *rt);
const crt_config *crt_rt_config(struct crt_runtime *rt);
/* crt_close is running (tasks are being cancelled, handles closed). */
int crt_rt_is_closing(struct crt_runtime *rt);
/* An exit was requested (crt.exit, a signal, a fatal error). */
int crt_rt_is_exiting(struct crt_runtime *rt);
/* The scheduler is running tasks right now (a call from inside a task). */
int crt_rt_is_draining(struct crt_runtime *rt);
/* The runtime created its Lua state (crt_open), as opposed to module mode. */
int crt_rt_owns_state(struct crt_runtime *rt);
/* Ask the runtime to end with this exit status: crt_step returns CRT_EEXIT. */
void crt_rt_request_exit(struct crt_runtime *rt, int code);
/* Log an error nobody awaits (with its traceback) and count it: the exit
 * status becomes 1 and crt_step returns CRT_EFAILED once. */
void crt_rt_report(struct crt_runtime *rt, const char *msg);
/* Errors reported so far. */
int crt_rt_nreported(struct crt_runtime *rt);
/* The exit status requested with crt_rt_request_exit (0 when none). */
int crt_rt_exit_status(struct crt_runtime *rt);
/* Count something that keeps the runtime running although no task is alive
 * (a crt.after / crt.every timer). */
void crt_rt_keepalive(struct crt_runtime *rt, int delta);

typedef struct crt_rt_stats {
  size_t tasks;     /* alive */
  size_t ready;     /* in the ready queue */
  size_t timers;    /* armed */
  size_t keepalive; /* see crt_rt_keepalive */
} crt_rt_stats;
void crt_rt_get_stats(struct crt_runtime *rt, crt_rt_stats *out);

#endif
