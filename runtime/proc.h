/*
 * proc.h - the process engine: child crt processes (starting them, the
 * per-runtime manager and its SIGCHLD reaper, the end of a child's life),
 * the one termination policy that every child of crt obeys (those of
 * crt.process.spawn and those of crt.process.exec/command), and the message
 * endpoints over the framed link of ipc.h (queues, flow control, tasks
 * waiting to receive, to send or for the outcome).
 *
 * Loop thread only (the runtime that owns the children). The engine touches
 * Lua only to report an unawaited failure through the binding's hook; it
 * registers no Lua function and raises no Lua error: functions return 0 or a
 * negative code (libuv's or CRT_PROC_E*), and bindings/process.c turns them
 * into Lua values and errors. See docs/processes.md for the choices.
 *
 * Files: proc.c (start, manager, reaper, termination, lifecycle of a
 * child), proc_msg.c (endpoints and waiters, the first message of a child).
 *
 * Termination policy: a child that must not outlive the runtime gets
 * SIGTERM, then CRT_PROC_GRACE_MS to exit, then SIGKILL, and is reaped
 * before crt_close returns. The grace is 1 s, the value crt.process.exec and
 * command already had (the child processes of spawn had 200 ms): a program
 * started by exec/command may be anything, and one that traps SIGTERM to
 * clean up (flush a file, remove a temporary) needs more than 200 ms on a
 * loaded machine; a crt child ends at once on SIGTERM unless its script
 * handles it, so the longer grace costs nothing in the common case, and the
 * wait ends as soon as the children are gone (it is a bound, not a delay).
 */
#ifndef CRT_PROC_H
#define CRT_PROC_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "include/crt_child.h"
#include "ipc.h"
#include "list.h"
#include "rt.h"
#include "scheduler.h"

/* SIGTERM, this long to exit, then SIGKILL (see above). */
#define CRT_PROC_GRACE_MS 1000

/* Error codes (negative, beside libuv's). */
#define CRT_PROC_ECLOSED (-7101) /* send after close() on this side */
#define CRT_PROC_EEXITED (-7102) /* the child has exited (kill) */

/* End the children pids[0..n) that must not outlive the runtime: SIGTERM
 * to each one still running, up to CRT_PROC_GRACE_MS for all of them to
 * exit, then SIGKILL to the rest; each one is reaped (waitpid) before this
 * returns. Blocking: for shutdown only. A pid <= 0 is skipped. */
void crt_proc_terminate(const int *pids, size_t n);

/* ---- endpoints (proc_msg.c): one side of a link ---------------------------- */

struct crt_proc;

typedef struct crt_proc_ep {
  crt_ipc ipc; /* stays first */
  crt_runtime *rt;
  struct crt_proc *proc; /* parent side: the child; NULL in a child */
  crt_fifo queue;        /* received messages (crt_ipc_msg) nobody took yet */
  size_t qbytes;
  crt_list recvers, senders; /* crt_proc_waiter */
  int nhold;                 /* waiters keeping the loop alive */
  unsigned char started;     /* crt_ipc_start was called (close_cb frees buffers) */
  unsigned char ended;       /* no more messages will arrive */
  unsigned char paused;      /* reading paused: qbytes went over CRT_IPC_RHIGH */
  unsigned char read_all;    /* never pause (someone awaits the end) */
  unsigned char discard;     /* nobody can receive: drop messages */
  unsigned char closed;      /* close() was called: no more sends */
  /* Child side. */
  int ppid;
  void **box; /* the slot of crt.parent's userdata: cleared when the link closes */
} crt_proc_ep;

/* A task waiting on an endpoint or a child. The binding allocates it (a
 * userdata on the task's stack), links it with crt_proc_wait and parks the
 * task with crt_proc_unpark as the unpark hook. */
typedef struct crt_proc_waiter {
  crt_link link;
  crt_list *list; /* the list it is in, NULL once woken or unparked */
  crt_task *task;
  crt_proc_ep *ep;
  crt_ipc_msg *msg; /* recv: the message handed over (NULL: the end) */
} crt_proc_waiter;

enum { CRT_PROC_RECV, CRT_PROC_SEND, CRT_PROC_AWAIT };

/* Link w (task t) into ep's list of that kind (AWAIT: parent side only)
 * and keep the loop alive while it waits. */
void crt_proc_wait(crt_proc_ep *ep, int kind, crt_proc_waiter *w, crt_task *t);
/* The unpark hook of a waiter (crt_unpark_fn). */
void crt_proc_unpark(crt_task *t, void *w);

/* The oldest received message (the caller owns it), or NULL. */
crt_ipc_msg *crt_proc_ep_take(crt_proc_ep *ep);
/* True when no message will ever come (recv returns nil). */
int crt_proc_ep_at_end(const crt_proc_ep *ep);
/* Whether a message can be sent: 0, CRT_PROC_ECLOSED, or the libuv error
 * of a link that cannot write (UV_EPIPE when the other side is gone). */
int crt_proc_ep_can_send(const crt_proc_ep *ep);
/* True when the sender should wait (CRT_PROC_SEND) for the queue to drain. */
int crt_proc_ep_full(const crt_proc_ep *ep);
/* close(): no more sends from this side; the peer reads the end. */
void crt_proc_ep_close(crt_proc_ep *ep);

/* Child side: open the link to the parent on fd (new endpoint, closed by a
 * close hook of rt). NULL when it cannot be opened (nothing to clean). */
crt_proc_ep *crt_proc_parent_open(crt_runtime *rt, int fd, int ppid);
/* Child side: read the first message (the CALL) from fd with blocking reads
 * of exactly its frames. NULL when the parent is gone or sent something
 * else. */
crt_ipc_msg *crt_proc_read_call(int fd);

/* ---- children (proc.c): the parent side ------------------------------------ */

typedef struct crt_proc_mgr crt_proc_mgr;

/* Report a failure nobody awaited (the binding formats it; L is the running
 * thread). Called when the outcome is known and the child object is gone,
 * at shutdown, and by the binding's finalizer. */
typedef void (*crt_proc_report_fn)(lua_State *L, struct crt_proc *p);

typedef struct crt_proc {
  crt_proc_ep ep; /* stays first */
  crt_proc_mgr *mgr;
  crt_link link; /* mgr's list of children */
  void **box;    /* the Lua object's slot (NULL once collected) */
  crt_proc_report_fn report;
  crt_list awaiters;   /* crt_proc_waiter */
  crt_ipc_msg *result; /* RESULT or FAIL */
  int pid;
  int refs; /* box + open pipe */
  int64_t exit_status;
  int term_signal;
  unsigned char exited;   /* reaped */
  unsigned char done;     /* exited and its last message is in (or never comes) */
  unsigned char killed;   /* kill() was called, or shutdown killed it */
  unsigned char proto;    /* killed for a malformed message */
  unsigned char observed; /* await saw the outcome */
  unsigned char reported; /* its failure was reported as unawaited */
  char why[128];          /* the protocol error */
} crt_proc;

/* The manager of rt's children, created on first use (its SIGCHLD watcher,
 * its shutdown hook). NULL when out of memory. */
crt_proc_mgr *crt_proc_mgr_get(lua_State *L, crt_runtime *rt);

/* The crt executable to start: crt_config.exe_path, else $CRT_EXE, else a
 * file named crt next to the binary or library this code is in. NULL when
 * there is none; buf may hold the result. */
const char *crt_proc_find_exe(crt_runtime *rt, char *buf, size_t size);

/* A new child, not started, owned by the Lua object whose slot is box
 * (refs = 1). Encode the CALL into crt_ipc_begin(&p->ep.ipc), then start it
 * with crt_proc_start. NULL when out of memory. */
crt_proc *crt_proc_new(crt_proc_mgr *m, void **box, crt_proc_report_fn report);
/* Start exe as the child p and send it the CALL message being built. 0, or
 * a libuv error (then p counts as done and observed: nothing to clean). */
int crt_proc_start(crt_proc *p, const char *exe);
/* The Lua object was collected: nobody can receive any more, so keep
 * reading (the child never blocks on a full pipe) but drop what comes. The
 * binding then reports a failure (if done) and drops the object's reference
 * with crt_proc_unref. */
void crt_proc_forget(crt_proc *p);
/* Drop one reference (the Lua object's, or the pipe's when it closed):
 * the last one frees p. */
void crt_proc_unref(crt_proc *p);
/* Send signal sig (0: only check): 0, CRT_PROC_EEXITED or a libuv error. */
int crt_proc_signal(crt_proc *p, int sig);
/* await: read to the end (results must arrive even if messages pile up). */
void crt_proc_await_prepare(crt_proc *p);
/* Not exited and the pipe still usable (the pool skips dead idle workers). */
int crt_proc_alive(const crt_proc *p);
/* It ended without sending results, or sent an error. */
static inline int crt_proc_failed(const crt_proc *p) {
  return !p->result || p->result->kind != CRT_IPC_RESULT;
}

/* Between proc.c and proc_msg.c. */
void crt_proc_check(crt_proc *p);
void crt_proc_protocol_error(crt_proc *p, const char *why);
void crt_proc_ep_deliver(crt_proc_ep *ep);
void crt_proc_ep_flow(crt_proc_ep *ep);
void crt_proc_ep_free_queue(crt_proc_ep *ep);
void crt_proc_ep_hold(crt_proc_ep *ep, int delta);
void crt_proc_wake(crt_proc_waiter *w, crt_ipc_msg *m);
void crt_proc_mgr_hold(crt_proc_mgr *m, int delta);
extern const crt_ipc_ops crt_proc_parent_ops;

#endif
