/*
 * select.c - the engine of crt.select: one waiter per case, every shared
 * channel locked at once (in address order) to pick the first case that can
 * complete or to queue all the waiters, then completion, timeouts and
 * cancellation. The cases come from the binding (bindings/channel.c) as an
 * array of crt_select_case.
 *
 * Threads: the thread that owns L (a loop thread for a task, a worker thread
 * blocked on its tctx); the claimer of a case may be any thread, under the
 * channel's lock (see chan_impl.h).
 */
#include <stdlib.h>

#include <uv.h>

#include "chan_impl.h"
#include "codec.h"

/* Lock (or unlock) every shared channel of a select once, in address order,
 * so that two selects over the same channels cannot deadlock. */
static int cmp_chan(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)(*(crt_chan *const *)a), y = (uintptr_t)(*(crt_chan *const *)b);
  return x < y ? -1 : x > y;
}

static void lock_all(crt_chan **sorted, int n) {
  for (int i = 0; i < n; i++)
    if (i == 0 || sorted[i] != sorted[i - 1])
      chan_lock(sorted[i]);
}

static void unlock_all(crt_chan **sorted, int n) {
  for (int i = n - 1; i >= 0; i--)
    if (i == 0 || sorted[i] != sorted[i - 1])
      chan_unlock(sorted[i]);
}

static void sel_detach(crt_select *sel) {
  for (int i = 0; i < sel->nwaiters; i++) {
    crt_waiter *w = &sel->waiters[i];
    chan_lock(w->ch);
    wq_remove(w);
    chan_unlock(w->ch);
  }
}

static void sel_free(crt_select *sel) {
  for (int i = 0; i < sel->nwaiters; i++) {
    crt_chan_item_free(&sel->waiters[i].val);
    if (sel->waiters[i].ch)
      crt_chan_release(sel->waiters[i].ch);
  }
  free(sel->waiters);
  free(sel);
}

static void sel_unpark(crt_task *t, void *data) {
  crt_select *sel = data;
  int expected = -1;
  if (!atomic_compare_exchange_strong(&sel->fired, &expected, 0)) {
    crt_task_defer_unpark(t); /* a case completed on another thread */
    return;
  }
  sel_detach(sel);
  if (sel->held)
    crt_rt_hold(sel->waiters[0].rt, -1);
  sel_free(sel);
}

/* The fired case: push its value (nil for sends and closed channels). */
static int sel_done(lua_State *L, crt_select *sel, int *index) {
  sel_detach(sel);
  int idx = atomic_load(&sel->fired);
  crt_waiter *w = &sel->waiters[idx - 1];
  chan_lock(w->ch); /* see what the claimer wrote under this lock */
  int closed = sel->closed;
  chan_unlock(w->ch);
  if (sel->held)
    crt_rt_hold(w->rt, -1);
  *index = idx;
  int rc = CRT_CHAN_OK;
  if (w->op == CRT_CHAN_OP_SEND) {
    if (closed)
      rc = CRT_CHAN_CLOSED;
    else
      lua_pushnil(L);
  } else if (closed) {
    lua_pushnil(L);
  } else if (w->val.kind != ITEM_NONE) {
    rc = crt_chan_push_item(L, &w->val); /* shared: the value is in the waiter */
  } /* else local: the sender pushed it on our stack (the top) */
  sel_free(sel);
  return rc;
}

int crt_select_finish(lua_State *L, crt_select *sel, int *index) {
  crt_task *t = crt_task_current(L);
  if ((t && crt_task_timed_out(t)) || !sel)
    return CRT_CHAN_TIMEOUT; /* the unpark hook freed the select */
  return sel_done(L, sel, index);
}

/* A thread without a loop waits for a case, an interrupt or the timeout. */
static int sel_block(crt_select *sel, crt_tctx *tc, double timeout) {
  double deadline = timeout >= 0 ? (double)uv_hrtime() / 1e9 + timeout : -1;
  for (;;) {
    if (atomic_load(&sel->fired) > 0)
      return CRT_CHAN_OK;
    double left = -1;
    if (deadline >= 0) {
      left = deadline - (double)uv_hrtime() / 1e9;
      if (left < 0)
        left = 0;
    }
    int r = crt_tctx_wait(tc, left);
    if (atomic_load(&sel->fired) > 0)
      return CRT_CHAN_OK;
    if (r < 0 || (r == 0 && deadline >= 0)) {
      int expected = -1;
      if (!atomic_compare_exchange_strong(&sel->fired, &expected, 0))
        return CRT_CHAN_OK; /* a case won the race */
      sel_detach(sel);
      sel_free(sel);
      return r < 0 ? CRT_CHAN_CANCELLED : CRT_CHAN_TIMEOUT;
    }
  }
}

int crt_select_wait(lua_State *L, crt_select *sel, double timeout, lua_KFunction k) {
  crt_task *t = crt_task_current(L);
  if (!t)
    return sel_block(sel, crt_tctx_current(), timeout);
  if (sel) {
    for (int i = 0; i < sel->nwaiters && !sel->held; i++)
      if (sel->waiters[i].ch->shared) {
        sel->held = 1;
        crt_rt_hold(sel->waiters[i].rt, 1);
      }
  }
  if (timeout > 0)
    crt_task_set_deadline(t, timeout);
  return crt_task_park(L, t, sel ? sel_unpark : NULL, sel, k, (lua_KContext)sel);
}

/* No case: a sleep that answers like a select that timed out. */
static int select_none(crt_task *t, crt_tctx *tc, double timeout, crt_select **wait) {
  if (timeout == 0 || !t) {
    if (!t && tc && timeout > 0)
      crt_tctx_wait(tc, timeout);
    else if (!t && timeout > 0)
      return CRT_CHAN_EMPTY;
    return CRT_CHAN_TIMEOUT;
  }
  *wait = NULL;
  return CRT_CHAN_WAIT;
}

/* One waiter per case, filled before any lock is taken (encoding the values
 * to send on shared channels can fail): nothing is held on failure. */
static int sel_new(lua_State *L, const crt_select_case *cases, int n, crt_task *t, crt_tctx *tc,
                   const char *what, crt_select **out) {
  crt_select *sel = calloc(1, sizeof *sel);
  crt_waiter *ws = sel ? calloc((size_t)n, sizeof *ws) : NULL;
  if (!ws) {
    free(sel);
    return CRT_CHAN_ENOMEM;
  }
  atomic_init(&sel->fired, -1);
  sel->waiters = ws;
  sel->nwaiters = n;
  for (int i = 0; i < n; i++) {
    crt_waiter *w = &ws[i];
    w->ch = cases[i].ch;
    crt_chan_retain(w->ch);
    w->sel = sel;
    w->task = t;
    w->rt = t ? crt_task_rt(t) : NULL;
    w->tc = tc;
    w->index = i + 1;
    w->op = cases[i].op;
    if (w->op == CRT_CHAN_OP_SEND && w->ch->shared) {
      crt_buf *b = malloc(sizeof *b);
      if (b)
        crt_buf_init(b);
      if (!b || crt_codec_encode(L, cases[i].vidx, 1, b, 0, what, 0) != 0) {
        if (b) {
          crt_buf_free(b);
          free(b);
        }
        sel_free(sel);
        return b ? CRT_CHAN_ERR : CRT_CHAN_ENOMEM;
      }
      w->val.buf = b;
      w->val.kind = ITEM_BUF;
    } else if (w->op == CRT_CHAN_OP_SEND) {
      w->slot = cases[i].vidx;
    }
  }
  *out = sel;
  return CRT_CHAN_OK;
}

int crt_select_start(lua_State *L, const crt_select_case *cases, int n, double timeout,
                     const char *what, crt_select **wait, int *index) {
  crt_task *t = crt_task_current(L);
  crt_tctx *tc = t ? NULL : crt_tctx_current();
  if (n == 0)
    return select_none(t, tc, timeout, wait);

  crt_chan **sorted = malloc((size_t)n * sizeof *sorted);
  if (!sorted)
    return CRT_CHAN_ENOMEM;
  crt_select *sel;
  int rc = sel_new(L, cases, n, t, tc, what, &sel);
  if (rc != CRT_CHAN_OK) {
    free(sorted);
    return rc;
  }
  crt_waiter *ws = sel->waiters;
  for (int i = 0; i < n; i++)
    sorted[i] = ws[i].ch;
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_chan);

  /* Under every lock: the first case that can complete now wins (in case
   * order); otherwise every waiter is queued before any lock is released,
   * so no completion can be missed. */
  lock_all(sorted, n);
  int chosen = 0, st = ST_WAIT;
  crt_waiter *peer = NULL;
  item it = ITEM_EMPTY;
  for (int i = 1; i <= n && !chosen; i++) {
    crt_waiter *w = &ws[i - 1];
    if (w->op == CRT_CHAN_OP_SEND) {
      st = crt_chan_send_core(w->ch, &peer);
      if (st == ST_CLOSED) {
        unlock_all(sorted, n);
        free(sorted);
        sel_free(sel);
        *index = i;
        return CRT_CHAN_CLOSED;
      }
      if (st != ST_WAIT) {
        chosen = i;
        if (w->ch->shared && crt_chan_send_commit(w->ch, st, peer, &w->val) != 0) {
          unlock_all(sorted, n);
          free(sorted);
          sel_free(sel);
          return CRT_CHAN_ENOMEM;
        }
      }
    } else {
      st = crt_chan_recv_core(w->ch, &it, &peer);
      if (st != ST_WAIT)
        chosen = i;
    }
  }
  if (!chosen && timeout != 0 && (t || tc)) {
    for (int i = 0; i < n; i++)
      wq_push(&ws[i]);
  }
  unlock_all(sorted, n);
  free(sorted);

  if (chosen) {
    crt_waiter *w = &ws[chosen - 1];
    *index = chosen;
    if (w->op == CRT_CHAN_OP_SEND) {
      if (!w->ch->shared)
        rc = crt_chan_send_local(L, w->ch, st, peer, w->slot);
      else if (peer)
        crt_chan_wake(peer, 0);
      sel_free(sel);
      if (rc == CRT_CHAN_OK)
        lua_pushnil(L);
      return rc;
    }
    crt_chan *ch = w->ch; /* kept alive by the caller */
    sel_free(sel);
    rc = crt_chan_recv_finish(L, ch, st, &it, peer);
    return rc == CRT_CHAN_CLOSED ? CRT_CHAN_OK : rc; /* a closed channel gives nil */
  }
  if (timeout == 0 || (!t && !tc)) {
    sel_free(sel);
    return timeout != 0 ? CRT_CHAN_EMPTY : CRT_CHAN_TIMEOUT;
  }
  *wait = sel;
  return CRT_CHAN_WAIT;
}
