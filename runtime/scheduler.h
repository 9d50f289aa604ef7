/*
 * scheduler.h - tasks: Lua coroutines resumed by the C scheduler of a runtime.
 *
 * Loop thread only. A task is a full userdata (struct crt_task) whose first
 * user value is its coroutine. While it is alive a registry reference pins
 * it, so the garbage collector never frees a task the scheduler or libuv
 * still points at.
 *
 * How a binding waits (the one protocol every waiting call follows):
 *
 *   crt_task *t = crt_task_require(L, "crt.fs.read");   // bindings/util.h:
 *                                                      // raises outside a task
 *   ... start the request, keep t in it ...
 *   return crt_task_park(L, t, my_unpark, req, my_k, ctx);
 *
 * The request's callback pushes its results onto crt_task_co(t) and calls
 * crt_task_wake(t, n). The task then resumes in my_k(L, LUA_YIELD, ctx) with
 * those n values on top of its stack; my_k returns what the call returns.
 * When the task is cancelled while parked, the scheduler calls
 * my_unpark(t, data) instead (which must detach the task from the request so
 * that it will never be woken; the request may finish later and must then
 * free itself), and the call raises crt.Cancelled in the task: my_k is not
 * called. A parked task must be woken or unparked exactly once.
 */
#ifndef CRT_SCHED_H
#define CRT_SCHED_H

#include <lua.h>
#include "timer.h"

struct crt_runtime;
struct crt_chan;
typedef struct crt_task crt_task;
typedef void (*crt_unpark_fn)(crt_task *t, void *data);

#define CRT_TASK_MT "crt.task"

enum { CRT_TASK_PENDING, CRT_TASK_RUNNING, CRT_TASK_DONE, CRT_TASK_FAILED, CRT_TASK_CANCELLED };

/* The task whose coroutine is L, or NULL (main state, a plain coroutine, a
 * worker thread). The bindings' crt_task_require (util.h) raises instead. */
crt_task *crt_task_current(lua_State *L);

lua_State *crt_task_co(crt_task *t);
struct crt_runtime *crt_task_rt(crt_task *t);

/* Park the running task (see the protocol above). Never returns normally:
 * use as `return crt_task_park(...)`. */
int crt_task_park(lua_State *L, crt_task *t, crt_unpark_fn unpark, void *data, lua_KFunction k,
                  lua_KContext ctx);
/* Make a parked task ready; n values were pushed on its coroutine. */
void crt_task_wake(crt_task *t, int n);

/* Start fn (at stack top of L, followed by nargs arguments: all popped) as a
 * new task; pushes the task object. */
crt_task *crt_task_spawn(struct crt_runtime *rt, lua_State *L, int nargs);

/* A task with no coroutine, that C code completes (a job on the thread
 * pool): pushes the task object. It is "running" until
 * crt_task_complete; awaiting it, crt.all/race and the rest work as for any
 * task. task:cancel() calls on_cancel(t, data) once, which must see to it
 * that the task is completed (at once or later), e.g. as cancelled. */
crt_task *crt_task_future(struct crt_runtime *rt, lua_State *L, crt_unpark_fn on_cancel,
                          void *data);
/* Complete a future (loop thread): ok with the n values at the top of L, or
 * failed with the error value at the top (n = 1; crt.Cancelled makes it
 * cancelled). The values are popped. Completing an ended task only pops. */
void crt_task_complete(crt_task *t, lua_State *L, int ok, int n);

/* Request cancellation (what task:cancel does). */
void crt_task_cancel(crt_task *t);

/* Run ready tasks (loop thread, never from inside a task). */
void crt_sched_drain(struct crt_runtime *rt);
/* Report every failed task nobody awaited and forget them. */
void crt_sched_report_unobserved(struct crt_runtime *rt);
/* Cancel all tasks and run them until none is ready (shutdown); with
 * abandon, then end what is still alive without running it. */
void crt_sched_cancel_all(struct crt_runtime *rt, int abandon);

/* ---- used by the bindings of tasks (bindings/task.c) ---- */

/* Sleep the running task (crt.sleep): seconds <= 0 acts as a yield round. */
int crt_task_sleep(lua_State *L, crt_task *t, double seconds);
/* Go to the back of the ready queue (crt.yield). */
int crt_task_yield(lua_State *L, crt_task *t);
/* Park self until target (alive, not self) has finished; then resume in
 * k(L, LUA_YIELD, (lua_KContext)target), which gets target's outcome with
 * crt_task_push_outcome. Use as `return crt_task_await(...)`. */
int crt_task_await(lua_State *L, crt_task *self, crt_task *target, lua_KFunction k);
/* The outcome of a finished task, pushed on L: returns the number of results
 * pushed, or CRT_TASK_RAISE with its error value pushed (to raise), or
 * CRT_TASK_NOSTACK with nothing pushed (too many results for L). Marks the
 * error as observed. */
int crt_task_push_outcome(lua_State *L, crt_task *t);
#define CRT_TASK_RAISE (-1)
#define CRT_TASK_NOSTACK (-2)
int crt_task_status(crt_task *t);
int crt_task_alive(crt_task *t);
/* On finishing, offer tag to ch (immediately if already finished). Returns
 * 0, or -1 when out of memory. */
int crt_task_notify(lua_State *L, crt_task *t, struct crt_chan *ch, lua_Integer tag);
void crt_task_observe(crt_task *t);
/* The work of a task object's __gc (L: the thread running the finalizer):
 * report its failure if nobody awaited it, free its outcome. */
void crt_task_finalize(lua_State *L, crt_task *t);
void crt_sched_set_cancelled(lua_State *L); /* pops the crt.Cancelled value */
void crt_sched_push_cancelled(lua_State *L);
/* Whether the value at idx is this state's crt.Cancelled. */
int crt_sched_is_cancelled(lua_State *L, int idx);

/* Arm the task's own timer while it is parked: when it fires first, the
 * unpark hook is called (as for a cancel) and the task resumes in its
 * continuation with crt_task_timed_out(t) true. A wake stops the timer. */
void crt_task_set_deadline(crt_task *t, double seconds);
int crt_task_timed_out(crt_task *t);

/* Called from an unpark hook (on the loop thread) when the wait cannot be
 * undone because it already completed on another thread, which will wake
 * the task: the task stays parked, keeps its result, and a cancel is
 * delivered at its next wait point instead. */
void crt_task_defer_unpark(crt_task *t);

#endif
