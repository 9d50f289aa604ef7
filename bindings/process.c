/*
 * process.c - child crt processes: crt.process.spawn and child objects
 * (send, recv, await, kill, close, pid), crt.parent in a child,
 * crt.process.pool (its logic is bindings/process.lua), the shutdown of
 * every child, and crt_child_main, the start of a child.
 *
 * Loop thread only. A child is the crt executable started with
 * CRT_CHILD_FLAG and a socket pair on CRT_CHILD_FD; messages are framed
 * codec buffers (runtime/ipc.h). See docs/processes.md for the choices.
 *
 * Ownership. A child is a malloc'd `proc` holding two libuv handles (the
 * process and the pipe, whose link lives in proc->ep.ipc) and referenced by
 * a Lua userdata box. It is freed when the box was collected and both
 * handles are closed (proc->refs counts the three), never by the GC while
 * libuv still uses it. A task waiting on a child keeps a `waiter` userdata
 * on its own coroutine stack (alive while the task is parked) linked into
 * the child's lists; the unpark hook unlinks it.
 *
 * Starting. posix_spawn (a vfork in glibc: no page tables copied, the
 * parent waits only for the exec) with a socket pair; the child's end
 * becomes CRT_CHILD_FD. Children are reaped by the runtime's own SIGCHLD
 * watcher (a uv_signal_t of the manager), which waits for each of its
 * children by pid, so it never takes the status of a process that libuv
 * (crt.process.exec) or the host started.
 *
 * Liveness. The handles are unref'd: a child nobody waits on does not keep
 * crt running (it is killed at shutdown). While a task waits on it, the
 * pipe and the SIGCHLD watcher are ref'd (ep_hold), so the loop stays alive
 * and a deadlock is not reported. Every child is reaped: by the watcher, or
 * at shutdown by the close hook (SIGTERM, a short grace, SIGKILL, waitpid).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <lauxlib.h>

#include "codec.h"
#include "ipc.h"
#include "io.h"
#include "util.h"
#include "process.h"
#include "rt.h"
#include "scheduler.h"

#define CHILD_MT "crt.process.child"
#define PARENT_MT "crt.process.parent"
#define CODEC_FLAGS (CRT_CODEC_FUNCTIONS | CRT_CODEC_NOCHANS)
/* At shutdown, children get SIGTERM and this long to exit before SIGKILL. */
#define GRACE_MS 200

const char *crt_lua_source(const char *name, size_t *len); /* generated */

#define container_of(p, type, field) ((type *)((char *)(p)-offsetof(type, field)))

/* ---- waiters ----------------------------------------------------------- */

struct endpoint;
typedef struct waiter waiter;
typedef struct wlist {
  waiter *head, *tail;
} wlist;

struct waiter {
  waiter *next, *prev;
  wlist *list;
  crt_task *task;
  struct endpoint *ep;
  crt_ipc_msg *msg; /* recv: the message handed over, NULL at the end */
};

static void wl_push(wlist *l, waiter *w) {
  w->list = l;
  w->next = NULL;
  w->prev = l->tail;
  if (l->tail)
    l->tail->next = w;
  else
    l->head = w;
  l->tail = w;
}

static void wl_remove(waiter *w) {
  wlist *l = w->list;
  if (!l)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    l->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    l->tail = w->prev;
  w->next = w->prev = NULL;
  w->list = NULL;
}

/* ---- endpoints: one side of a link, shared by both processes ------------ */

struct proc;

typedef struct endpoint {
  crt_ipc ipc;
  crt_runtime *rt;
  struct proc *proc;          /* parent side: the child; NULL in a child */
  crt_ipc_msg *qhead, *qtail; /* received messages nobody took yet */
  size_t qbytes;
  wlist recvers, senders;
  int nhold;    /* waiters keeping the loop alive */
  int started;  /* crt_ipc_start was called (close_cb will free buffers) */
  int ended;    /* no more messages will arrive */
  int paused;   /* reading paused: qbytes went over CRT_IPC_RHIGH */
  int read_all; /* never pause (someone awaits the end) */
  int discard;  /* nobody can receive: drop messages */
  int closed;   /* close() was called: no more sends */
  const char *send_name, *recv_name;
  /* Child side. */
  int ppid;
  void **box; /* crt.parent's userdata slot */
} endpoint;

typedef struct pmgr pmgr;

typedef struct proc {
  endpoint ep;
  pmgr *mgr;
  struct proc *next, *prev; /* mgr->procs */
  struct proc **box;
  wlist awaiters;
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
} proc;

struct pmgr {
  crt_handle_close_fn close_fn; /* the handle convention of rt.h, for sigchld */
  uv_signal_t sigchld;
  crt_runtime *rt;
  proc *procs;  /* every child not yet freed */
  int nrunning; /* not reaped yet */
  int nwait;    /* tasks waiting on a child: keep sigchld ref'd */
};

static const char mgr_key = 'P';

static void ep_hold(endpoint *ep, int delta) {
  ep->nhold += delta;
  crt_ipc_hold(&ep->ipc, delta);
  pmgr *m = ep->proc ? ep->proc->mgr : NULL;
  if (m) {
    /* An exit arrives through the watcher: it must keep the loop alive. */
    m->nwait += delta;
    if (m->nwait > 0)
      uv_ref((uv_handle_t *)&m->sigchld);
    else
      uv_unref((uv_handle_t *)&m->sigchld);
  }
}

static void wake(waiter *w, crt_ipc_msg *m) {
  wl_remove(w);
  w->msg = m;
  ep_hold(w->ep, -1);
  crt_task_wake(w->task, 0);
}

static void waiter_unpark(crt_task *t, void *data) {
  waiter *w = data;
  (void)t;
  wl_remove(w);
  ep_hold(w->ep, -1);
  crt_ipc_msg_free(w->msg);
  w->msg = NULL;
}

/* Park the running task on list l of ep; returns through k. */
static int park(lua_State *L, crt_task *t, endpoint *ep, wlist *l, lua_KFunction k) {
  waiter *w = lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  w->task = t;
  w->ep = ep;
  wl_push(l, w);
  ep_hold(ep, 1);
  return crt_task_park(L, t, waiter_unpark, w, k, (lua_KContext)w);
}

static void q_push(endpoint *ep, crt_ipc_msg *m) {
  m->next = NULL;
  if (ep->qtail)
    ep->qtail->next = m;
  else
    ep->qhead = m;
  ep->qtail = m;
  ep->qbytes += m->len;
}

static crt_ipc_msg *q_pop(endpoint *ep) {
  crt_ipc_msg *m = ep->qhead;
  if (!m)
    return NULL;
  ep->qhead = m->next;
  if (!ep->qhead)
    ep->qtail = NULL;
  ep->qbytes -= m->len;
  m->next = NULL;
  return m;
}

static void q_free(endpoint *ep) {
  crt_ipc_msg *m;
  while ((m = q_pop(ep)))
    crt_ipc_msg_free(m);
}

/* Pause reading while too much waits to be received (see ipc.h). */
static void ep_flow(endpoint *ep) {
  if (!ep->ipc.open)
    return;
  if (!ep->paused && ep->qbytes > CRT_IPC_RHIGH && !ep->read_all) {
    ep->paused = 1;
    crt_ipc_pause(&ep->ipc, 1);
  } else if (ep->paused && (ep->qbytes < CRT_IPC_RLOW || ep->read_all)) {
    ep->paused = 0;
    crt_ipc_pause(&ep->ipc, 0);
  }
}

/* Hand queued messages to waiting receivers; at the end, nil to the rest. */
static void ep_deliver(endpoint *ep) {
  while (ep->recvers.head && ep->qhead)
    wake(ep->recvers.head, q_pop(ep));
  if (ep->ended && !ep->qhead)
    while (ep->recvers.head)
      wake(ep->recvers.head, NULL);
  ep_flow(ep);
}

static void proc_check(proc *p);
static void proc_protocol_error(proc *p, const char *why);
static void child_parent_gone(endpoint *ep);

static void ep_on_message(crt_ipc *ipc) {
  endpoint *ep = ipc->owner;
  proc *p = ep->proc;
  crt_ipc_msg *m;
  while ((m = crt_ipc_take(ipc))) {
    if (m->kind == CRT_IPC_MSG) {
      if (ep->discard)
        crt_ipc_msg_free(m);
      else
        q_push(ep, m);
    } else if (p && (m->kind == CRT_IPC_RESULT || m->kind == CRT_IPC_FAIL) && !p->result) {
      p->result = m;
    } else {
      unsigned kind = m->kind;
      crt_ipc_msg_free(m);
      if (p) {
        char why[64];
        snprintf(why, sizeof why, "a message of kind %u", kind);
        proc_protocol_error(p, why);
        break;
      }
      /* A child ignores anything but messages from its parent. */
    }
  }
  ep_deliver(ep);
  if (p)
    proc_check(p);
}

static void ep_on_end(crt_ipc *ipc) {
  endpoint *ep = ipc->owner;
  ep->ended = 1;
  if (ep->proc && ipc->rerr == CRT_IPC_EPROTO)
    proc_protocol_error(ep->proc, crt_ipc_strerror(ipc, ipc->rerr));
  ep_deliver(ep);
  if (ep->proc)
    proc_check(ep->proc);
  else
    child_parent_gone(ep);
}

static void ep_on_drain(crt_ipc *ipc) {
  endpoint *ep = ipc->owner;
  while (ep->senders.head)
    wake(ep->senders.head, NULL);
}

static void proc_unref(proc *p);

static void proc_on_closed(crt_ipc *ipc) { proc_unref(((endpoint *)ipc->owner)->proc); }

static const crt_ipc_ops parent_ops = {ep_on_message, ep_on_drain, ep_on_end, proc_on_closed};

/* ---- sending and receiving (both sides) ----------------------------------- */

/* Decode message m onto L (freeing it first if decoding fails, then
 * raising). */
static int push_msg(lua_State *L, crt_ipc_msg *m, const char *fname) {
  int n = crt_codec_decode(L, m->data, m->len, CODEC_FLAGS);
  crt_ipc_msg_free(m);
  if (n < 0)
    return crt_errorf(L, fname, "%s", lua_tostring(L, -1));
  return n;
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  waiter *w = (waiter *)ctx;
  (void)status;
  crt_ipc_msg *m = w->msg;
  w->msg = NULL;
  if (!m) {
    lua_pushnil(L);
    return 1;
  }
  return push_msg(L, m, w->ep->recv_name);
}

static crt_ipc_msg *ep_take(endpoint *ep) {
  crt_ipc_msg *m = q_pop(ep);
  if (m)
    ep_flow(ep);
  return m;
}

static int ep_recv(lua_State *L, endpoint *ep) {
  crt_ipc_msg *m = ep_take(ep);
  if (m)
    return push_msg(L, m, ep->recv_name);
  if (ep->ended || !ep->ipc.open) {
    lua_pushnil(L);
    return 1;
  }
  crt_task *t = crt_task_require(L, ep->recv_name);
  return park(L, t, ep, &ep->recvers, recv_k);
}

/* Outside-world failure of a send: nil, message, code. */
static int send_fail(lua_State *L, endpoint *ep, int err) {
  if (ep->proc)
    lua_pushfstring(L, "%s: child process %d is gone", ep->send_name, ep->proc->pid);
  else
    lua_pushfstring(L, "%s: the parent process is gone", ep->send_name);
  lua_pushnil(L);
  lua_insert(L, -2);
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  waiter *w = (waiter *)ctx;
  (void)status;
  endpoint *ep = w->ep;
  if (ep->ipc.werr)
    return send_fail(L, ep, ep->ipc.werr);
  lua_pushboolean(L, 1);
  return 1;
}

/* Replace `old` by `new` in the string at the top of L. */
static void gsub_top(lua_State *L, const char *old, const char *repl) {
  const char *s = luaL_gsub(L, lua_tostring(L, -1), old, repl);
  (void)s;
  lua_remove(L, -2);
}

/* Send the n values at first.. as one message of this kind. what/argbase
 * name the values in an encoding error (codec.h); results = 1 names them
 * "result #k". Raises on an unsendable value; returns true, or nil,
 * message, code when the other side is gone; waits (in a task) while the
 * pipe is full. */
static int ep_send(lua_State *L, endpoint *ep, int first, int n, unsigned kind, const char *what,
                   int argbase, int results) {
  if (ep->closed)
    return crt_errorf(L, ep->send_name, "the link was closed with close()");
  if (!ep->ipc.open || ep->ipc.shut || ep->ipc.werr)
    return send_fail(L, ep, ep->ipc.werr ? ep->ipc.werr : UV_EPIPE);
  crt_buf *b = crt_ipc_begin(&ep->ipc);
  if (!b)
    return crt_errorf(L, ep->send_name, "not enough memory");
  if (crt_codec_encode(L, first, n, b, CRT_CODEC_NOCHANS, what, argbase) != 0) {
    crt_ipc_abort(&ep->ipc);
    if (results) {
      gsub_top(L, "result argument #", "result #");
      gsub_top(L, "result value", "result #1");
    }
    return lua_error(L);
  }
  size_t len = b->len - ep->ipc.frame_start - CRT_IPC_HDR;
  int e = crt_ipc_end(&ep->ipc, kind);
  if (e == UV_E2BIG)
    return crt_errorf(L, ep->send_name, "message too large (%f MiB encoded; the limit is %d MiB)",
                      (double)len / (1 << 20), (int)(CRT_IPC_MAXMSG >> 20));
  if (e == UV_ENOMEM)
    return crt_errorf(L, ep->send_name, "not enough memory");
  if (e)
    return send_fail(L, ep, e);
  if (crt_ipc_pending(&ep->ipc) > CRT_IPC_WHIGH) {
    crt_task *t = crt_task_current(L);
    if (t)
      return park(L, t, ep, &ep->senders, send_k);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* send(v): exactly one value, not nil. */
static int ep_send1(lua_State *L, endpoint *ep) {
  if (lua_gettop(L) < 2 || lua_isnil(L, 2))
    return crt_errorf(L, ep->send_name, "bad argument #1 (value expected, got %s)",
                      lua_gettop(L) < 2 ? "no value" : "nil");
  lua_settop(L, 2);
  char what[48];
  snprintf(what, sizeof what, "%s: cannot send", ep->send_name);
  return ep_send(L, ep, 2, 1, CRT_IPC_MSG, what, 0, 0);
}

/* _sendv(what, argbase, results, ...): internal (the pool), any number of
 * values, errors worded by the caller. */
static int ep_sendv(lua_State *L, endpoint *ep) {
  const char *what = luaL_checkstring(L, 2);
  int argbase = (int)luaL_checkinteger(L, 3);
  int results = lua_toboolean(L, 4);
  return ep_send(L, ep, 5, lua_gettop(L) - 4, CRT_IPC_MSG, what, argbase, results);
}

/* ---- signals ------------------------------------------------------------ */

/* Signal names and numbers are shared with crt.signal and crt.process.command
 * (bindings/io.c). */
static const char *signame(int sig) {
  const char *name = crt_io_signame(sig);
  return name ? name : "unknown signal";
}

static int check_signal(lua_State *L, int arg, const char *fname) {
  return crt_io_checksignal(L, arg, fname);
}

/* ---- children (parent side) ----------------------------------------------- */

static int proc_failed(const proc *p) { return !p->result || p->result->kind != CRT_IPC_RESULT; }

/* Push why a child that sent no results ended. */
static void push_death(lua_State *L, const proc *p) {
  if (p->proto)
    lua_pushfstring(L, "child process %d sent a malformed message (%s) and was killed", p->pid,
                    p->why);
  else if (p->term_signal)
    lua_pushfstring(L, "child process %d was killed by signal %s (%d)", p->pid,
                    signame(p->term_signal), p->term_signal);
  else if (p->exit_status == -1)
    lua_pushfstring(L,
                    "child process %d exited without returning results (its exit status was "
                    "taken by another waitpid)",
                    p->pid);
  else
    lua_pushfstring(L, "child process %d exited with code %d without returning results", p->pid,
                    (int)p->exit_status);
}

/* A failure nobody awaited (the box was collected, or shutdown came): print
 * it like an unawaited task error, so that it is never lost. L is the
 * running thread (the main state from the loop, whichever thread runs a
 * finalizer). */
static void proc_report(lua_State *L, proc *p) {
  if (p->reported || p->observed || p->killed || !p->done || !proc_failed(p))
    return;
  p->reported = 1;
  crt_runtime *rt = p->ep.rt;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8))
    return;
  lua_pushliteral(L, "crt: error in a child process that nobody awaited:\n");
  if (p->result) {
    int n = crt_codec_decode(L, p->result->data, p->result->len, CODEC_FLAGS);
    if (n >= 1 && lua_type(L, top + 2) == LUA_TSTRING) {
      lua_settop(L, top + 2);
    } else {
      lua_settop(L, top + 1);
      lua_pushfstring(L, "child process %d failed with a non-string error", p->pid);
    }
  } else {
    push_death(L, p);
  }
  lua_concat(L, 2);
  crt_rt_report(rt, lua_tostring(L, -1));
  lua_settop(L, top);
}

static void proc_free(proc *p) {
  if (p->mgr) {
    if (p->prev)
      p->prev->next = p->next;
    else
      p->mgr->procs = p->next;
    if (p->next)
      p->next->prev = p->prev;
  }
  if (!p->ep.started) {
    /* The link never opened: its buffers were not freed by its close. */
    crt_buf_free(&p->ep.ipc.batch);
    crt_buf_free(&p->ep.ipc.spare);
    crt_ipc_reader_free(&p->ep.ipc.rd);
  }
  crt_ipc_msg_free(p->result);
  q_free(&p->ep);
  free(p);
}

static void proc_unref(proc *p) {
  if (--p->refs == 0)
    proc_free(p);
}

/* Done once reaped and its last message is in (or cannot come any more):
 * wake the awaiters, close the pipe. */
static void proc_check(proc *p) {
  if (p->done || !p->exited || !(p->result || p->ep.ended))
    return;
  p->done = 1;
  while (p->awaiters.head)
    wake(p->awaiters.head, NULL);
  if (!p->ep.ended) {
    p->ep.ended = 1;
    ep_deliver(&p->ep);
  }
  crt_ipc_close(&p->ep.ipc);
  if (!p->box)
    proc_report(crt_lua(p->ep.rt), p);
}

static void proc_protocol_error(proc *p, const char *why) {
  if (p->proto)
    return;
  p->proto = 1;
  snprintf(p->why, sizeof p->why, "%s", why);
  p->ep.ended = 1;
  crt_ipc_pause(&p->ep.ipc, 1);
  if (!p->exited && p->pid > 0)
    kill(p->pid, SIGKILL);
}

/* Reaped with wait status st (-1: someone else took the status). */
static void proc_exited(proc *p, int st) {
  p->exited = 1;
  if (p->mgr)
    p->mgr->nrunning--;
  if (st != -1 && WIFSIGNALED(st))
    p->term_signal = WTERMSIG(st);
  else
    p->exit_status = st == -1 ? -1 : WEXITSTATUS(st);
  /* Read to the end even if the queue is full: the EOF (or the results)
   * must come for the child to be done. */
  p->ep.read_all = 1;
  ep_flow(&p->ep);
  proc_check(p);
}

static proc *check_child(lua_State *L, const char *fname) {
  proc **box = luaL_testudata(L, 1, CHILD_MT);
  if (!box) {
    crt_typeerror(L, fname, 1, "child");
    return NULL;
  }
  if (!*box)
    crt_errorf(L, fname, "the child object was finalized");
  return *box;
}

static int c_send(lua_State *L) { return ep_send1(L, &check_child(L, "child:send")->ep); }
static int c_sendv(lua_State *L) { return ep_sendv(L, &check_child(L, "child:_sendv")->ep); }
static int c_recv(lua_State *L) { return ep_recv(L, &check_child(L, "child:recv")->ep); }

static int push_outcome(lua_State *L, proc *p) {
  p->observed = 1;
  crt_ipc_msg *r = p->result;
  if (r) {
    int top = lua_gettop(L);
    int n = crt_codec_decode(L, r->data, r->len, CODEC_FLAGS);
    if (n < 0)
      return crt_errorf(L, "child:await", "cannot decode the results of child process %d: %s",
                        p->pid, lua_tostring(L, -1));
    if (r->kind == CRT_IPC_FAIL) {
      lua_settop(L, top + 1);
      return lua_error(L);
    }
    return n;
  }
  push_death(L, p);
  return lua_error(L);
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  waiter *w = (waiter *)ctx;
  (void)status;
  return push_outcome(L, w->ep->proc);
}

static int c_await(lua_State *L) {
  proc *p = check_child(L, "child:await");
  if (p->done)
    return push_outcome(L, p);
  crt_task *t = crt_task_require(L, "child:await");
  if (!p->ep.read_all) {
    p->ep.read_all = 1;
    ep_flow(&p->ep);
  }
  return park(L, t, &p->ep, &p->awaiters, await_k);
}

static int c_kill(lua_State *L) {
  proc *p = check_child(L, "child:kill");
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : check_signal(L, 2, "child:kill");
  if (p->exited || p->pid <= 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "child:kill: child process %d has exited", p->pid);
    lua_pushliteral(L, "ESRCH");
    return 3;
  }
  if (kill(p->pid, sig) != 0)
    return crt_pushfail(L, uv_translate_sys_error(errno), "child:kill");
  if (sig != 0)
    p->killed = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* close(): no more messages to the child; its crt.parent:recv() returns nil
 * once it has received the ones already sent. */
static int c_close(lua_State *L) {
  proc *p = check_child(L, "child:close");
  if (!p->ep.closed) {
    p->ep.closed = 1;
    crt_ipc_shutdown(&p->ep.ipc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* _alive(): not exited and the pipe still open (the pool skips dead idle
 * workers). */
static int c_alive(lua_State *L) {
  proc *p = check_child(L, "child:_alive");
  lua_pushboolean(L, !p->exited && !p->ep.ended && !p->ep.ipc.werr);
  return 1;
}

static int c_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    proc **box = lua_touserdata(L, 1);
    lua_pushinteger(L, *box ? (*box)->pid : 0);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int c_tostring(lua_State *L) {
  proc **box = luaL_checkudata(L, 1, CHILD_MT);
  proc *p = *box;
  const char *st = !p ? "finalized" : !p->done ? "running" : proc_failed(p) ? "failed" : "done";
  lua_pushfstring(L, "crt.process.child: %d (%s)", p ? p->pid : 0, st);
  return 1;
}

static int c_gc(lua_State *L) {
  proc **box = luaL_checkudata(L, 1, CHILD_MT);
  proc *p = *box;
  if (!p)
    return 0;
  *box = NULL;
  p->box = NULL;
  /* Nobody can receive any more: keep reading (so the child never blocks
   * on a full pipe) but drop what comes. */
  p->ep.discard = 1;
  p->ep.read_all = 1;
  q_free(&p->ep);
  ep_flow(&p->ep);
  if (p->done)
    proc_report(L, p);
  proc_unref(p);
  return 0;
}

/* ---- the per-runtime manager ----------------------------------------------- */

static double now_ms(void) { return (double)uv_hrtime() / 1e6; }

/* SIGCHLD: reap those of our children that exited, each by its pid. */
static void on_sigchld(uv_signal_t *h, int signum) {
  pmgr *m = container_of(h, pmgr, sigchld);
  (void)signum;
  proc *next;
  for (proc *p = m->procs; p && m->nrunning > 0; p = next) {
    next = p->next; /* proc_exited frees nothing at once, but be safe */
    if (p->exited || p->pid <= 0)
      continue;
    int st;
    pid_t r;
    do
      r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == p->pid)
      proc_exited(p, st);
    else if (r < 0 && errno == ECHILD)
      proc_exited(p, -1); /* reaped by someone else (a host's waitpid(-1)) */
  }
}

static void mgr_closed(uv_handle_t *h) { free(container_of(h, pmgr, sigchld)); }

/* The runtime closes the watcher through this if it is still open. */
static void mgr_handle_close(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, mgr_closed);
}

/* Shutdown (after every task was cancelled): end every child still running
 * (SIGTERM, up to GRACE_MS to exit, then SIGKILL), reap it, close the
 * handles, report failures nobody awaited. */
static void mgr_close(void *ud) {
  pmgr *m = ud;
  int left = 0;
  for (proc *p = m->procs; p; p = p->next)
    if (!p->exited && p->pid > 0 && kill(p->pid, SIGTERM) == 0)
      left++;
  double deadline = now_ms() + GRACE_MS;
  while (left > 0) {
    left = 0;
    for (proc *p = m->procs; p; p = p->next) {
      if (p->exited || p->pid <= 0)
        continue;
      int st;
      pid_t r = waitpid(p->pid, &st, WNOHANG);
      if (r == p->pid || (r < 0 && errno == ECHILD)) {
        p->exited = 1;
        p->killed = 1;
        m->nrunning--;
      } else {
        left++;
      }
    }
    if (left == 0 || now_ms() > deadline)
      break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  for (proc *p = m->procs; p; p = p->next) {
    if (!p->exited && p->pid > 0) {
      int st;
      kill(p->pid, SIGKILL);
      while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
        ;
      p->exited = 1;
      p->killed = 1;
      m->nrunning--;
    }
  }
  proc *p = m->procs;
  while (p) {
    proc *next = p->next;
    p->mgr = NULL;
    p->prev = p->next = NULL;
    if (!p->done) {
      p->done = 1;
      p->killed = 1;
    } else if (p->box) {
      proc_report(crt_lua(m->rt), p);
    }
    crt_ipc_close(&p->ep.ipc);
    p = next;
  }
  m->procs = NULL;
  lua_pushnil(crt_lua(m->rt));
  lua_rawsetp(crt_lua(m->rt), LUA_REGISTRYINDEX, &mgr_key);
  if (!uv_is_closing((uv_handle_t *)&m->sigchld))
    uv_close((uv_handle_t *)&m->sigchld, mgr_closed);
}

static void ignore_sigpipe(void) {
  /* Writes to a child that died must fail with EPIPE, not kill us; a host
   * that installed its own handler keeps it. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

/* The manager, created by the first spawn ("nothing starts before it is
 * used"). NULL when out of memory. */
static pmgr *mgr_get(lua_State *L, crt_runtime *rt) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mgr_key);
  pmgr *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (m)
    return m;
  m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->rt = rt;
  m->close_fn = mgr_handle_close;
  if (crt_rt_on_close(rt, mgr_close, m) != 0) {
    free(m);
    return NULL;
  }
  /* Watch before the first spawn, so that no exit is missed. */
  uv_signal_init(crt_rt_loop(rt), &m->sigchld);
  m->sigchld.data = &m->close_fn;
  uv_signal_start(&m->sigchld, on_sigchld, SIGCHLD);
  uv_unref((uv_handle_t *)&m->sigchld);
  ignore_sigpipe();
  lua_pushlightuserdata(L, m);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mgr_key);
  return m;
}

/* The crt executable to start: crt_config.exe_path, else $CRT_EXE, else a
 * file named crt next to the binary or library this code is in (the crt
 * executable itself, crt.so in a build or install directory, a host linked
 * statically next to crt). */
static const char *find_exe(crt_runtime *rt, char *buf, size_t size) {
  if (crt_rt_config(rt)->exe_path && crt_rt_config(rt)->exe_path[0])
    return crt_rt_config(rt)->exe_path;
  const char *env = getenv("CRT_EXE");
  if (env && env[0])
    return env;
  Dl_info info;
  if (dladdr((void *)crt_child_main, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    if (slash) {
      snprintf(buf, size, "%.*s/crt", (int)(slash - info.dli_fname), info.dli_fname);
      if (access(buf, X_OK) == 0)
        return buf;
    }
  }
  return NULL;
}

extern char **environ;

/* Start exe as a child of p: the socket pair, posix_spawn, the parent's end
 * opened as p's pipe. Returns 0 or a libuv error code (nothing to clean). */
static int start_child(crt_runtime *rt, proc *p, const char *exe) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return uv_translate_sys_error(errno);
  if (sv[1] == CRT_CHILD_FD) {
    /* dup2 onto itself would leave close-on-exec set. */
    int d = fcntl(sv[1], F_DUPFD_CLOEXEC, CRT_CHILD_FD + 1);
    close(sv[1]);
    sv[1] = d;
    if (d < 0) {
      int e = errno;
      close(sv[0]);
      return uv_translate_sys_error(e);
    }
  }
  char ppid[24];
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  /* argv[0] is for ps and top: the real path rather than /proc/self/exe. */
  char self[PATH_MAX];
  const char *name = exe;
  if (strcmp(exe, "/proc/self/exe") == 0) {
    ssize_t k = readlink(exe, self, sizeof self - 1);
    if (k > 0) {
      self[k] = 0;
      name = self;
    }
  }
  char *args[] = {(char *)name, CRT_CHILD_FLAG, ppid, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  /* stdin: /dev/null (a child must not compete for the terminal); stdout
   * and stderr: the parent's; the pipe on CRT_CHILD_FD. Signals as libuv
   * sets them for its children: default actions, nothing blocked. */
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, sv[1], CRT_CHILD_FD);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  /* A bare name ("crt") is looked up in PATH, as a shell would. */
  int e = strchr(exe, '/') ? posix_spawn(&pid, exe, &fa, &at, args, environ)
                           : posix_spawnp(&pid, exe, &fa, &at, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(sv[1]);
  if (e) {
    close(sv[0]);
    return uv_translate_sys_error(e);
  }
  p->pid = (int)pid;
  uv_pipe_init(crt_rt_loop(rt), &p->ep.ipc.pipe, 0);
  p->ep.ipc.pipe.data = &p->ep.ipc;
  e = uv_pipe_open(&p->ep.ipc.pipe, sv[0]);
  if (e) {
    /* Cannot happen with a fresh socket; do not leave the child behind. */
    close(sv[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return e;
  }
  p->refs++; /* the pipe, until its close callback */
  return 0;
}

static crt_runtime *rt_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

#define SPAWN "crt.process.spawn"

static int l_spawn(lua_State *L) {
  crt_runtime *rt = rt_of(L);
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, SPAWN, 1, "function");
  if (crt_rt_is_closing(rt))
    return crt_errorf(L, SPAWN, "the runtime is closing");
  int nvals = lua_gettop(L);
  char exebuf[PATH_MAX];
  const char *exe = find_exe(rt, exebuf, sizeof exebuf);
  if (!exe) {
    lua_pushnil(L);
    lua_pushliteral(L, SPAWN ": no crt executable to start (set crt_config.exe_path, or CRT_EXE)");
    lua_pushliteral(L, "ENOENT");
    return 3;
  }
  pmgr *m = mgr_get(L, rt);
  if (!m)
    return crt_errorf(L, SPAWN, "not enough memory");

  /* The box first: from here on the GC frees p if anything raises. */
  proc **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, CHILD_MT);
  proc *p = calloc(1, sizeof *p);
  if (!p)
    return crt_errorf(L, SPAWN, "not enough memory");
  crt_ipc_init(&p->ep.ipc);
  p->ep.rt = rt;
  p->ep.proc = p;
  p->ep.send_name = "child:send";
  p->ep.recv_name = "child:recv";
  p->refs = 1;
  p->box = box;
  *box = p;
  p->mgr = m;
  p->next = m->procs;
  if (m->procs)
    m->procs->prev = p;
  m->procs = p;

  /* Encode before starting anything: an unsendable argument starts nothing. */
  crt_buf *b = crt_ipc_begin(&p->ep.ipc);
  if (!b)
    return crt_errorf(L, SPAWN, "not enough memory");
  if (crt_codec_encode(L, 1, nvals, b, CRT_CODEC_NOCHANS, SPAWN ": cannot send", 0) != 0) {
    if (nvals == 1) /* the codec says "value" for a lone value: it is argument #1 */
      gsub_top(L, SPAWN ": cannot send value", SPAWN ": cannot send argument #1");
    return lua_error(L);
  }
  if (b->len - CRT_IPC_HDR > CRT_IPC_MAXMSG)
    return crt_errorf(L, SPAWN,
                      "the function and its arguments are too large (%f MiB encoded; "
                      "the limit is %d MiB)",
                      (double)b->len / (1 << 20), (int)(CRT_IPC_MAXMSG >> 20));

  int e = start_child(rt, p, exe);
  if (e) {
    p->exited = p->done = p->observed = 1;
    lua_pushnil(L);
    lua_pushfstring(L, SPAWN ": cannot start %s: %s", exe, uv_strerror(e));
    lua_pushstring(L, uv_err_name(e));
    return 3;
  }
  m->nrunning++;
  p->ep.started = 1;
  crt_ipc_start(&p->ep.ipc, &parent_ops, &p->ep);
  /* A write error here means the child is already gone: await says why. */
  crt_ipc_end(&p->ep.ipc, CRT_IPC_CALL);
  return 1;
}

/* ---- the pool (bindings/process.lua) --------------------------------------- */

static const char pool_key = 'Q';

/* crt.process.pool{...}: the Lua constructor, loaded on first use. */
static int l_pool(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    size_t len;
    const char *src = crt_lua_source("process", &len);
    if (!src || luaL_loadbuffer(L, src, len, "=[crt process]") != LUA_OK)
      return crt_errorf(L, "crt.process.pool", "cannot load the pool: %s",
                        src ? lua_tostring(L, -1) : "no source");
    lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
    lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
    lua_call(L, 2, 1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pool_key);
  }
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* ---- registration ------------------------------------------------------------- */

void crt_open_process(lua_State *L, crt_runtime *rt) {
  static const luaL_Reg child_methods[] = {
      {"send", c_send},   {"recv", c_recv},    {"await", c_await},  {"kill", c_kill},
      {"close", c_close}, {"_sendv", c_sendv}, {"_alive", c_alive}, {NULL, NULL}};
  if (luaL_newmetatable(L, CHILD_MT)) {
    luaL_newlib(L, child_methods);
    lua_pushcclosure(L, c_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, c_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, c_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "process") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "process");
  }
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_spawn, 1);
  lua_setfield(L, -2, "spawn");
  lua_pushcfunction(L, l_pool);
  lua_setfield(L, -2, "pool");
  lua_pop(L, 1);
}

/* ---- the child side ------------------------------------------------------------ */

static endpoint *check_parent(lua_State *L, const char *fname) {
  void **box = luaL_testudata(L, 1, PARENT_MT);
  if (!box) {
    crt_typeerror(L, fname, 1, "crt.parent");
    return NULL;
  }
  if (!*box)
    crt_errorf(L, fname, "the link to the parent is closed");
  return *box;
}

static int p_send(lua_State *L) { return ep_send1(L, check_parent(L, "crt.parent:send")); }
static int p_sendv(lua_State *L) { return ep_sendv(L, check_parent(L, "crt.parent:_sendv")); }
static int p_recv(lua_State *L) { return ep_recv(L, check_parent(L, "crt.parent:recv")); }

static int p_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    void **box = lua_touserdata(L, 1);
    lua_pushinteger(L, *box ? ((endpoint *)*box)->ppid : 0);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static void child_parent_gone(endpoint *ep) {
  /* EOF from the parent: a parent that died takes its children with it
   * (on Linux PR_SET_PDEATHSIG already did; this covers the rest). A
   * parent that only closed its side (child:close) is not gone. */
  if (ep->ppid > 0 && getppid() != ep->ppid) {
    crt_rt_request_exit(ep->rt, 1);
  }
}

static void child_on_closed(crt_ipc *ipc) {
  endpoint *ep = ipc->owner;
  if (ep->box)
    *ep->box = NULL;
  q_free(ep);
  free(ep);
}

static const crt_ipc_ops child_ops = {ep_on_message, ep_on_drain, ep_on_end, child_on_closed};

static void child_close_hook(void *ud) { crt_ipc_close(ud); }

static int child_msgh(lua_State *L) {
  int t = lua_type(L, 1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER)
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

static int is_cancelled(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  crt_sched_push_cancelled(L);
  int eq = lua_rawequal(L, idx, -1);
  lua_pop(L, 1);
  return eq;
}

/* The function returned (status OK or YIELD) or raised: send its results
 * or its error as the last message. */
static int child_run_k(lua_State *L, int status, lua_KContext ctx) {
  endpoint *ep = lua_touserdata(L, lua_upvalueindex(1));
  (void)ctx;
  int ok = status == LUA_OK || status == LUA_YIELD;
  if (!ok && is_cancelled(L, -1))
    return lua_error(L); /* cancelled (the child is shutting down): nothing to send */
  int first = ok ? 2 : lua_gettop(L);
  int n = ok ? lua_gettop(L) - 1 : 1;
  unsigned kind = ok ? CRT_IPC_RESULT : CRT_IPC_FAIL;
  const char *what = ok ? SPAWN ": cannot send result" : SPAWN ": cannot send the error";
  crt_buf *b = crt_ipc_begin(&ep->ipc);
  if (!b)
    return 0;
  if (crt_codec_encode(L, first, n, b, CRT_CODEC_NOCHANS, what, 0) != 0) {
    crt_ipc_abort(&ep->ipc);
    gsub_top(L, "result argument #", "result #");
    gsub_top(L, "result value", "result #1");
    kind = CRT_IPC_FAIL;
    b = crt_ipc_begin(&ep->ipc);
    if (!b || crt_codec_encode(L, -1, 1, b, 0, what, 0) != 0) {
      crt_ipc_abort(&ep->ipc);
      return 0;
    }
  }
  crt_ipc_end(&ep->ipc, kind);
  return 0;
}

/* The main task of a child: fn(...) under a message handler that adds the
 * child's traceback. */
static int child_run(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  lua_pushcfunction(L, child_msgh);
  lua_insert(L, 1);
  int st = lua_pcallk(L, nargs, LUA_MULTRET, 1, 0, child_run_k);
  return child_run_k(L, st, 0);
}

/* The main task when the first message could not be used. */
static int child_bad_call(lua_State *L) { return lua_error(L); }

static int read_full(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Read the first message (the CALL) with blocking reads of exactly its
 * frames, so that nothing sent after it is consumed here. */
static crt_ipc_msg *read_call(int fd) {
  crt_ipc_reader rd;
  crt_ipc_reader_init(&rd);
  crt_ipc_msg *m = NULL;
  char *payload = NULL;
  while (!m) {
    char hdr[CRT_IPC_HDR];
    if (read_full(fd, hdr, sizeof hdr) != 0 || crt_ipc_reader_feed(&rd, hdr, sizeof hdr) != 0)
      break;
    size_t flen = ((unsigned char)hdr[0]) | ((size_t)(unsigned char)hdr[1] << 8) |
                  ((size_t)(unsigned char)hdr[2] << 16);
    payload = malloc(flen);
    if (!payload || read_full(fd, payload, flen) != 0 ||
        crt_ipc_reader_feed(&rd, payload, flen) != 0)
      break;
    free(payload);
    payload = NULL;
    m = crt_ipc_reader_take(&rd);
  }
  free(payload);
  crt_ipc_reader_free(&rd);
  if (m && m->kind != CRT_IPC_CALL) {
    crt_ipc_msg_free(m);
    m = NULL;
  }
  return m;
}

int crt_child_main(int argc, char **argv) {
  long ppid = argc >= 3 ? strtol(argv[2], NULL, 10) : 0;
#ifdef __linux__
  /* Die with the parent. Set first, then check that the parent did not die
   * before it took effect. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* Started as /proc/self/exe, the process would be called "exe". */
  prctl(PR_SET_NAME, "crt");
#endif
  int fd = CRT_CHILD_FD;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || ppid <= 0) {
    fprintf(stderr, "crt: %s is for child processes started by crt.process.spawn\n",
            CRT_CHILD_FLAG);
    return 2;
  }
  if ((long)getppid() != ppid)
    return 1; /* the parent is already gone */
  signal(SIGPIPE, SIG_IGN);
  /* Lines printed by the parent and its children interleave in time order
   * even when stdout is a pipe or a file. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Not inherited by programs the child runs (os.execute, io.popen). */
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (fl & O_NONBLOCK)
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  crt_ipc_msg *call = read_call(fd);
  if (!call)
    return 1; /* the parent is gone or sent nothing usable */

  crt_config cfg;
  crt_config_init(&cfg);
  cfg.exe_path = "/proc/self/exe";
  crt_runtime *rt = crt_open(&cfg);
  if (!rt) {
    crt_ipc_msg_free(call);
    return 1;
  }
  lua_State *L = crt_lua(rt);

  endpoint *ep = calloc(1, sizeof *ep);
  if (!ep) {
    crt_ipc_msg_free(call);
    crt_close(rt);
    return 1;
  }
  crt_ipc_init(&ep->ipc);
  ep->rt = rt;
  ep->ppid = (int)ppid;
  ep->send_name = "crt.parent:send";
  ep->recv_name = "crt.parent:recv";
  uv_pipe_init(crt_rt_loop(rt), &ep->ipc.pipe, 0);
  ep->ipc.pipe.data = &ep->ipc;
  if (uv_pipe_open(&ep->ipc.pipe, fd) != 0) {
    crt_ipc_msg_free(call);
    free(ep);
    crt_close(rt);
    return 1;
  }
  ep->started = 1;
  crt_ipc_start(&ep->ipc, &child_ops, ep);
  crt_rt_on_close(rt, child_close_hook, &ep->ipc);

  /* crt.parent */
  static const luaL_Reg parent_methods[] = {
      {"send", p_send}, {"recv", p_recv}, {"_sendv", p_sendv}, {NULL, NULL}};
  lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
  void **pbox = lua_newuserdatauv(L, sizeof *pbox, 0);
  *pbox = ep;
  ep->box = pbox;
  if (luaL_newmetatable(L, PARENT_MT)) {
    luaL_newlib(L, parent_methods);
    lua_pushcclosure(L, p_index, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "parent");
  lua_pop(L, 1);

  /* The main task: child_run(fn, args...). */
  lua_pushlightuserdata(L, ep);
  lua_pushcclosure(L, child_run, 1);
  int base = lua_gettop(L);
  int n = crt_codec_decode(L, call->data, call->len, CODEC_FLAGS);
  crt_ipc_msg_free(call);
  if (n < 1 || lua_type(L, base + 1) != LUA_TFUNCTION) {
    /* Run child_bad_call(message) instead: the parent gets the error. */
    lua_pushfstring(L, SPAWN ": the child cannot load the function: %s",
                    n < 0 ? lua_tostring(L, -1) : "no function in the first message");
    lua_insert(L, base + 1);
    lua_settop(L, base + 1);
    lua_pushcfunction(L, child_bad_call);
    lua_insert(L, base + 1);
    n = 2;
  }
  crt_start_main(rt, n);
  crt_step(rt, CRT_UNTIL_DONE);
  /* What was sent must reach the parent before the process ends. */
  while (*pbox && crt_ipc_writing(&ep->ipc))
    uv_run(crt_rt_loop(rt), UV_RUN_ONCE);
  int code = crt_exit_code(rt);
  crt_close(rt);
  return code;
}
