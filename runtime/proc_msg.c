/*
 * proc_msg.c - the message endpoints of child processes (proc.h): one side
 * of the framed link of ipc.h, in the parent (a child object's) or in the
 * child (crt.parent's). Owns the queue of received messages, the flow
 * control that pauses reading when too much waits to be received, the
 * tasks waiting to receive or to send (and to await, for the parent side),
 * what the link's callbacks do, and the first message a child reads.
 *
 * Loop thread only. No Lua here: bindings/process.c encodes and decodes the
 * values, and parks the tasks with the waiters this file links and wakes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "proc.h"

/* ---- waiters --------------------------------------------------------------- */

void crt_proc_ep_hold(crt_proc_ep *ep, int delta) {
  ep->nhold += delta;
  crt_ipc_hold(&ep->ipc, delta);
  /* An exit arrives through the manager's watcher: it must keep the loop
   * alive too. */
  if (ep->proc && ep->proc->mgr)
    crt_proc_mgr_hold(ep->proc->mgr, delta);
}

static void waiter_unlink(crt_proc_waiter *w) {
  if (w->list) {
    crt_list_remove(w->list, &w->link);
    w->list = NULL;
  }
}

static crt_proc_waiter *first_waiter(crt_list *l) {
  return crt_container_of(l->head, crt_proc_waiter, link);
}

void crt_proc_wake(crt_proc_waiter *w, crt_ipc_msg *m) {
  waiter_unlink(w);
  w->msg = m;
  crt_proc_ep_hold(w->ep, -1);
  crt_task_wake(w->task, 0);
}

void crt_proc_unpark(crt_task *t, void *data) {
  crt_proc_waiter *w = data;
  (void)t;
  waiter_unlink(w);
  crt_proc_ep_hold(w->ep, -1);
  crt_ipc_msg_free(w->msg);
  w->msg = NULL;
}

void crt_proc_wait(crt_proc_ep *ep, int kind, crt_proc_waiter *w, crt_task *t) {
  crt_list *l = kind == CRT_PROC_RECV   ? &ep->recvers
                : kind == CRT_PROC_SEND ? &ep->senders
                                        : &ep->proc->awaiters;
  w->task = t;
  w->ep = ep;
  w->msg = NULL;
  w->list = l;
  crt_list_push(l, &w->link);
  crt_proc_ep_hold(ep, 1);
}

/* ---- the queue of received messages ----------------------------------------- */

static void q_push(crt_proc_ep *ep, crt_ipc_msg *m) {
  crt_fifo_push(&ep->queue, &m->node);
  ep->qbytes += m->len;
}

static crt_ipc_msg *q_pop(crt_proc_ep *ep) {
  crt_snode *n = crt_fifo_pop(&ep->queue); /* crt_container_of evaluates its argument twice */
  crt_ipc_msg *m = crt_container_of(n, crt_ipc_msg, node);
  if (m)
    ep->qbytes -= m->len;
  return m;
}

void crt_proc_ep_free_queue(crt_proc_ep *ep) {
  crt_ipc_msg *m;
  while ((m = q_pop(ep)))
    crt_ipc_msg_free(m);
}

/* Pause reading while too much waits to be received (see ipc.h). */
void crt_proc_ep_flow(crt_proc_ep *ep) {
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
void crt_proc_ep_deliver(crt_proc_ep *ep) {
  while (!crt_list_empty(&ep->recvers) && !crt_fifo_empty(&ep->queue))
    crt_proc_wake(first_waiter(&ep->recvers), q_pop(ep));
  if (ep->ended && crt_fifo_empty(&ep->queue))
    while (!crt_list_empty(&ep->recvers))
      crt_proc_wake(first_waiter(&ep->recvers), NULL);
  crt_proc_ep_flow(ep);
}

crt_ipc_msg *crt_proc_ep_take(crt_proc_ep *ep) {
  crt_ipc_msg *m = q_pop(ep);
  if (m)
    crt_proc_ep_flow(ep);
  return m;
}

int crt_proc_ep_at_end(const crt_proc_ep *ep) { return ep->ended || !ep->ipc.open; }

int crt_proc_ep_can_send(const crt_proc_ep *ep) {
  if (ep->closed)
    return CRT_PROC_ECLOSED;
  if (!ep->ipc.open || ep->ipc.shut || ep->ipc.werr)
    return ep->ipc.werr ? ep->ipc.werr : UV_EPIPE;
  return 0;
}

int crt_proc_ep_full(const crt_proc_ep *ep) { return crt_ipc_pending(&ep->ipc) > CRT_IPC_WHIGH; }

void crt_proc_ep_close(crt_proc_ep *ep) {
  if (!ep->closed) {
    ep->closed = 1;
    crt_ipc_shutdown(&ep->ipc);
  }
}

/* ---- what the link tells an endpoint ------------------------------------------ */

static void child_parent_gone(crt_proc_ep *ep);

static void ep_on_message(crt_ipc *ipc) {
  crt_proc_ep *ep = ipc->owner;
  crt_proc *p = ep->proc;
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
        crt_proc_protocol_error(p, why);
        break;
      }
      /* A child ignores anything but messages from its parent. */
    }
  }
  crt_proc_ep_deliver(ep);
  if (p)
    crt_proc_check(p);
}

static void ep_on_end(crt_ipc *ipc) {
  crt_proc_ep *ep = ipc->owner;
  ep->ended = 1;
  if (ep->proc && ipc->rerr == CRT_IPC_EPROTO)
    crt_proc_protocol_error(ep->proc, crt_ipc_strerror(ipc, ipc->rerr));
  crt_proc_ep_deliver(ep);
  if (ep->proc)
    crt_proc_check(ep->proc);
  else
    child_parent_gone(ep);
}

static void ep_on_drain(crt_ipc *ipc) {
  crt_proc_ep *ep = ipc->owner;
  while (!crt_list_empty(&ep->senders))
    crt_proc_wake(first_waiter(&ep->senders), NULL);
}

static void parent_on_closed(crt_ipc *ipc) { crt_proc_unref(((crt_proc_ep *)ipc->owner)->proc); }

const crt_ipc_ops crt_proc_parent_ops = {ep_on_message, ep_on_drain, ep_on_end, parent_on_closed};

/* ---- the child side ------------------------------------------------------------- */

static void child_parent_gone(crt_proc_ep *ep) {
  /* EOF from the parent: a parent that died takes its children with it
   * (on Linux PR_SET_PDEATHSIG already did; this covers the rest). A
   * parent that only closed its side (child:close) is not gone. */
  if (ep->ppid > 0 && getppid() != ep->ppid)
    crt_rt_request_exit(ep->rt, 1);
}

static void child_on_closed(crt_ipc *ipc) {
  crt_proc_ep *ep = ipc->owner;
  if (ep->box)
    *ep->box = NULL;
  crt_proc_ep_free_queue(ep);
  free(ep);
}

static const crt_ipc_ops child_ops = {ep_on_message, ep_on_drain, ep_on_end, child_on_closed};

static void child_close_hook(void *ud) { crt_ipc_close(ud); }

crt_proc_ep *crt_proc_parent_open(crt_runtime *rt, int fd, int ppid) {
  crt_proc_ep *ep = calloc(1, sizeof *ep);
  if (!ep)
    return NULL;
  crt_ipc_init(&ep->ipc);
  ep->rt = rt;
  ep->ppid = ppid;
  uv_pipe_init(crt_rt_loop(rt), &ep->ipc.pipe, 0);
  ep->ipc.pipe.data = &ep->ipc;
  if (uv_pipe_open(&ep->ipc.pipe, fd) != 0) {
    free(ep);
    return NULL;
  }
  ep->started = 1;
  crt_ipc_start(&ep->ipc, &child_ops, ep);
  crt_rt_on_close(rt, child_close_hook, &ep->ipc);
  return ep;
}

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

crt_ipc_msg *crt_proc_read_call(int fd) {
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
