/*
 * chan_impl.h - the inside of a channel, shared by chan.c (the channel
 * itself and its single operations) and select.c (select over several
 * channels). Private to those two files: everything else uses chan.h.
 *
 * Threads: a "local" channel (never sent to another Lua state) is touched
 * only by the loop thread of the state that created it, and needs no lock.
 * Once shared (crt_chan_share), every operation takes ch->mu (chan_lock);
 * the only lock taken while holding it is none (a channel lock is a leaf;
 * select takes several channel locks, always in address order).
 *
 * Values: in a local channel a queued value is a reference in the owner
 * state's store table, and a value handed to or taken from a parked task is
 * copied straight between the two coroutines' stacks (the parked one keeps
 * its value on its own stack while it waits): no encoding, no allocation.
 * In a shared channel every value is an encoded crt_buf (a deep copy).
 *
 * A waiter is one parked operation. A plain send or recv has one; select has
 * one per case, all pointing at one crt_select whose `fired` is claimed once
 * (compare-and-swap, so that two channels can race for it when threads are
 * involved); waiters of a fired select left in other queues are skipped and
 * removed by their owner when it resumes.
 */
#ifndef CRT_CHAN_IMPL_H
#define CRT_CHAN_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "buf.h"
#include "chan.h"
#include "list.h"
#include "rt.h"
#include "scheduler.h"
#include "select.h"
#include "tctx.h"

enum { ITEM_NONE, ITEM_REF, ITEM_BUF, ITEM_SMALL };

/* Encoded values up to this size (most messages) are kept inside the item:
 * no allocation per message. */
#define ITEM_INLINE 48

typedef struct item {
  int kind;
  int ref;      /* ITEM_REF: in the owner state's store table */
  crt_buf *buf; /* ITEM_BUF */
  uint32_t len; /* ITEM_SMALL: the encoded bytes in small */
  char small[ITEM_INLINE];
} item;

#define ITEM_EMPTY                                                                                 \
  {                                                                                                \
    ITEM_NONE, 0, NULL, 0, { 0 }                                                                   \
  }

struct crt_select {
  atomic_int fired; /* case index that completed; -1 while none; 0 = given up */
  int closed;       /* completed because the channel closed (under its lock) */
  int nwaiters;
  int held; /* counted in the runtime's holds (a task waiting on shared channels) */
  struct crt_waiter *waiters;
};

/* One parked operation: of a task (woken on its loop thread, directly or
 * through a post from another thread) or of a thread without a loop
 * (blocked on its tctx). Fields below `link` change under the channel's
 * lock once the waiter is queued. */
typedef struct crt_waiter {
  crt_chan *ch; /* retained */
  crt_select *sel;
  crt_task *task;
  crt_runtime *rt;
  crt_tctx *tc;
  crt_post post;
  int index; /* 1-based case index */
  int op;    /* CRT_CHAN_OP_RECV / CRT_CHAN_OP_SEND */
  int held;
  crt_link link; /* in the channel's recvq or sendq */
  int done;      /* claimed by the other side */
  int closed;    /* completed because the channel was closed */
  /* A parked sender's value: on its own coroutine's stack at `slot` (local
   * channel) or encoded in `val` (shared channel). A parked receiver gets its
   * value pushed on its coroutine's stack (local) or in `val` (shared). */
  int slot;
  item val;
} crt_waiter;

struct crt_chan {
  atomic_int refs;
  int shared;
  int closed;
  uint64_t id;
  size_t cap;
  /* Ring buffer of queued values. */
  item *ring;
  size_t rcap, head, count;
  crt_list recvq, sendq; /* of crt_waiter.link */
  pthread_mutex_t mu;
  atomic_uint_fast64_t sent, received;
};

static inline void chan_lock(crt_chan *ch) {
  if (ch->shared)
    pthread_mutex_lock(&ch->mu);
}
static inline void chan_unlock(crt_chan *ch) {
  if (ch->shared)
    pthread_mutex_unlock(&ch->mu);
}

/* ---- waiter queues (lock held) ------------------------------------------- */

static inline crt_list *wq_of(crt_waiter *w) {
  return w->op == CRT_CHAN_OP_RECV ? &w->ch->recvq : &w->ch->sendq;
}

/* Queue w on its channel. */
static inline void wq_push(crt_waiter *w) { crt_list_push(wq_of(w), &w->link); }

/* Take w out of its channel's queue if it is still there. */
static inline void wq_remove(crt_waiter *w) {
  crt_list *q = wq_of(w);
  if (crt_list_contains(q, &w->link))
    crt_list_remove(q, &w->link);
}

/* Take the first waiter of q that can still complete (claiming its select),
 * dropping stale waiters of selects that already fired elsewhere. */
static inline crt_waiter *wq_claim(crt_list *q) {
  crt_link *l;
  while ((l = crt_list_pop(q))) {
    crt_waiter *w = crt_container_of(l, crt_waiter, link);
    int expected = -1;
    if (!w->sel || atomic_compare_exchange_strong(&w->sel->fired, &expected, w->index)) {
      w->done = 1;
      return w;
    }
  }
  return NULL;
}

/* ---- shared by chan.c and select.c (defined in chan.c) -------------------- */

/* What a send or a receive can do now, decided under the channel's lock by
 * the cores; the callers finish the work after unlocking. */
enum { ST_WAIT, ST_PEER, ST_ITEM, ST_CLOSED };

static inline void crt_chan_item_free(item *it) {
  if (it->kind == ITEM_BUF) {
    crt_buf_free(it->buf);
    free(it->buf);
  }
  it->kind = ITEM_NONE;
  it->buf = NULL;
}
/* Push the value of an item onto L and release the item. Returns
 * CRT_CHAN_OK, or CRT_CHAN_ERR with the decoder's message pushed instead. */
int crt_chan_push_item(lua_State *L, item *it);
/* Wake the owner of a claimed waiter, after its value moved. `pushed`
 * values were pushed on a local task's own stack. */
void crt_chan_wake(crt_waiter *w, int pushed);

/* Lock held. ST_PEER: a parked receiver *r was claimed; ST_ITEM: there is
 * room in the queue; ST_WAIT; ST_CLOSED. */
int crt_chan_send_core(crt_chan *ch, crt_waiter **r);
/* Lock held, shared channel: hand the encoded value over or queue it.
 * Returns -1 when the queue cannot grow (the value is still the caller's). */
int crt_chan_send_commit(crt_chan *ch, int st, crt_waiter *r, item *enc);
/* Unlocked, local channel: hand the value at stack index vidx over or queue
 * it. Returns CRT_CHAN_OK or CRT_CHAN_ENOMEM. */
int crt_chan_send_local(lua_State *L, crt_chan *ch, int st, crt_waiter *r, int vidx);
/* Lock held. ST_ITEM: *it was taken from the queue (and a parked sender *s
 * claimed to refill it: a shared one's value already moved in); ST_PEER: a
 * parked sender *s was claimed (a shared one's value moved to *it); ST_CLOSED
 * (closed and drained); ST_WAIT. */
int crt_chan_recv_core(crt_chan *ch, item *it, crt_waiter **s);
/* Unlocked: push the received value on L (nil for ST_CLOSED) and wake the
 * sender involved. Returns CRT_CHAN_OK, CRT_CHAN_CLOSED, or CRT_CHAN_ERR
 * (the decoder's message pushed instead of the value). */
int crt_chan_recv_finish(lua_State *L, crt_chan *ch, int st, item *it, crt_waiter *s);

#endif
