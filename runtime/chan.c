/*
 * chan.c - channels: a bounded, unbounded or rendezvous queue of values with
 * queues of parked senders and receivers, and crt.select over several.
 *
 * Threads: a "local" channel (never sent to another Lua state) is touched
 * only by the loop thread of the state that created it, and needs no lock.
 * Once shared (crt_chan_share, called by the codec), every operation takes
 * ch->mu; the only lock taken while holding it is none (lock order: a
 * channel lock is a leaf; select takes one channel lock at a time).
 *
 * Values: in a local channel a queued value is a reference in the owner
 * state's store table, and a value handed to or taken from a parked task is
 * copied straight between the two coroutines' stacks (the parked one keeps
 * its value on its own stack while it waits): no encoding, no allocation.
 * In a shared channel every value is an encoded crt_buf (a deep copy).
 *
 * A waiter is one parked operation. A plain send or recv has one; select has
 * one per case, all pointing at one crt_sel whose `fired` is claimed once
 * (compare-and-swap, so that two channels can race for it when threads are
 * involved); waiters of a fired select left in other queues are skipped and
 * removed by their owner when it resumes.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <pthread.h>

#include "chan.h"
#include "codec.h"
#include "rt.h"
#include "util.h" /* TODO(issue 8): the engine must not raise Lua errors */
#include "scheduler.h"
#include "tctx.h"

enum { OP_RECV, OP_SEND };
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

typedef struct crt_sel {
  atomic_int fired; /* case index that completed; -1 while none; 0 = given up */
  int closed;       /* completed because the channel closed (under its lock) */
  int nwaiters;
  int held; /* counted in rt->nhold (a task waiting on shared channels) */
  struct crt_waiter *waiters;
} crt_sel;

/* One parked operation: of a task (woken on its loop thread, directly or
 * through a post from another thread) or of a thread without a loop
 * (blocked on its tctx). Fields below `queued` change under the channel's
 * lock once the waiter is queued. */
typedef struct crt_waiter {
  struct crt_waiter *prev, *next; /* in the channel's queue */
  crt_chan *ch;                   /* retained */
  crt_sel *sel;
  crt_task *task;
  crt_runtime *rt;
  crt_tctx *tc;
  crt_post post;
  int index; /* 1-based case index */
  int op;
  int held;
  int queued;
  int done;   /* claimed by the other side */
  int closed; /* completed because the channel was closed */
  /* A parked sender's value: on its own coroutine's stack at `slot` (local
   * channel) or encoded in `val` (shared channel). A parked receiver gets its
   * value pushed on its coroutine's stack (local) or in `val` (shared). */
  int slot;
  item val;
} crt_waiter;

typedef struct wqueue {
  crt_waiter *head, *tail;
} wqueue;

struct crt_chan {
  atomic_int refs;
  int shared;
  int closed;
  uint64_t id;
  size_t cap;
  /* Ring buffer of queued values. */
  item *ring;
  size_t rcap, head, count;
  wqueue recvq, sendq;
  pthread_mutex_t mu;
  atomic_uint_fast64_t sent, received;
};

static atomic_uint_fast64_t next_id = 1;
static const char store_key = 'S';
static const char proxies_key = 'P';

/* ---- the process-wide table of shared channels (id -> channel) ---------- */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static crt_chan **reg_slots;
static size_t reg_cap, reg_count;

static size_t reg_hash(uint64_t id) { return (size_t)(id * 0x9E3779B97F4A7C15ull); }

/* reg_mu held. Open addressing with linear probing; NULL = empty. Deletion
 * re-inserts the rest of the cluster. */
static int reg_insert(crt_chan *ch) {
  if ((reg_count + 1) * 2 > reg_cap) {
    size_t ncap = reg_cap ? reg_cap * 2 : 64;
    crt_chan **slots = calloc(ncap, sizeof *slots);
    if (!slots)
      return -1;
    for (size_t i = 0; i < reg_cap; i++) {
      crt_chan *c = reg_slots[i];
      if (!c)
        continue;
      size_t j = reg_hash(c->id) & (ncap - 1);
      while (slots[j])
        j = (j + 1) & (ncap - 1);
      slots[j] = c;
    }
    free(reg_slots);
    reg_slots = slots;
    reg_cap = ncap;
  }
  size_t j = reg_hash(ch->id) & (reg_cap - 1);
  while (reg_slots[j])
    j = (j + 1) & (reg_cap - 1);
  reg_slots[j] = ch;
  reg_count++;
  return 0;
}

static size_t reg_find(uint64_t id) {
  if (!reg_cap)
    return (size_t)-1;
  size_t j = reg_hash(id) & (reg_cap - 1);
  while (reg_slots[j]) {
    if (reg_slots[j]->id == id)
      return j;
    j = (j + 1) & (reg_cap - 1);
  }
  return (size_t)-1;
}

static void reg_remove(crt_chan *ch) {
  size_t j = reg_find(ch->id);
  if (j == (size_t)-1)
    return;
  reg_slots[j] = NULL;
  reg_count--;
  for (size_t k = (j + 1) & (reg_cap - 1); reg_slots[k]; k = (k + 1) & (reg_cap - 1)) {
    crt_chan *c = reg_slots[k];
    reg_slots[k] = NULL;
    reg_count--;
    reg_insert(c); /* cannot fail: the table does not grow */
  }
  if (reg_count == 0) {
    free(reg_slots);
    reg_slots = NULL;
    reg_cap = 0;
  }
}

/* ---- life ------------------------------------------------------------- */

static crt_chan *chan_new(size_t cap) {
  crt_chan *ch = calloc(1, sizeof *ch);
  if (!ch)
    return NULL;
  atomic_init(&ch->refs, 1);
  ch->cap = cap;
  ch->id = atomic_fetch_add(&next_id, 1);
  pthread_mutex_init(&ch->mu, NULL);
  return ch;
}

static void item_free(item *it) {
  if (it->kind == ITEM_BUF) {
    crt_buf_free(it->buf);
    free(it->buf);
  }
  it->kind = ITEM_NONE;
  it->buf = NULL;
}

static void chan_free(crt_chan *ch) {
  /* A local channel's queued references die with the owner's store table
   * entries only if we unref them; a local channel is freed on its owner's
   * thread, but possibly while the state closes, so the references are left
   * to the state (the store table is collected with it). */
  for (size_t i = 0; i < ch->count; i++)
    item_free(&ch->ring[(ch->head + i) % ch->rcap]);
  free(ch->ring);
  pthread_mutex_destroy(&ch->mu);
  free(ch);
}

/* A local channel is reachable from one thread only: its count needs no
 * atomic read-modify-write. It becomes shared on that same thread. */
void crt_chan_retain(crt_chan *ch) {
  if (ch->shared)
    atomic_fetch_add(&ch->refs, 1);
  else
    atomic_store_explicit(&ch->refs, atomic_load_explicit(&ch->refs, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void crt_chan_release(crt_chan *ch) {
  if (!ch->shared) {
    int n = atomic_load_explicit(&ch->refs, memory_order_relaxed) - 1;
    atomic_store_explicit(&ch->refs, n, memory_order_relaxed);
    if (n == 0)
      chan_free(ch);
    return;
  }
  /* A shared channel can be found by id: dropping the last reference and
   * leaving the table happen under the table's lock, so a lookup never
   * revives a channel being freed. */
  pthread_mutex_lock(&reg_mu);
  int last = atomic_fetch_sub(&ch->refs, 1) == 1;
  if (last)
    reg_remove(ch);
  pthread_mutex_unlock(&reg_mu);
  if (last)
    chan_free(ch);
}

static void lock(crt_chan *ch) {
  if (ch->shared)
    pthread_mutex_lock(&ch->mu);
}
static void unlock(crt_chan *ch) {
  if (ch->shared)
    pthread_mutex_unlock(&ch->mu);
}

/* ---- proxies ------------------------------------------------------------ */

typedef struct proxy {
  crt_chan *ch;
} proxy;

static const char *const fname_send = "channel:send";

/* Push the one proxy this state has for ch (creating it; retains ch). */
static void push_proxy(lua_State *L, crt_chan *ch) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &proxies_key);
  if (lua_rawgetp(L, -1, ch) == LUA_TUSERDATA) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  proxy *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->ch = ch;
  crt_chan_retain(ch);
  luaL_setmetatable(L, CRT_CHAN_MT);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, ch);
  lua_remove(L, -2);
}

crt_chan *crt_chan_test(lua_State *L, int idx) {
  proxy *p = luaL_testudata(L, idx, CRT_CHAN_MT);
  return p ? p->ch : NULL;
}

/* Every method has the channel metatable as upvalue 1: comparing it is much
 * cheaper than luaL_testudata's registry lookup by name, on the hot path. */
static crt_chan *check_chan(lua_State *L, const char *fname) {
  proxy *p = lua_touserdata(L, 1);
  if (p && lua_getmetatable(L, 1)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok)
      return p->ch;
  }
  crt_typeerror(L, fname, 1, "channel");
}

/* ---- the ring ----------------------------------------------------------- */

static int ring_push(crt_chan *ch, item it) {
  if (ch->count == ch->rcap) {
    size_t ncap = ch->rcap ? ch->rcap * 2 : 8;
    item *ring = malloc(ncap * sizeof *ring);
    if (!ring)
      return -1;
    for (size_t i = 0; i < ch->count; i++)
      ring[i] = ch->ring[(ch->head + i) % ch->rcap];
    free(ch->ring);
    ch->ring = ring;
    ch->rcap = ncap;
    ch->head = 0;
  }
  ch->ring[(ch->head + ch->count) % ch->rcap] = it;
  ch->count++;
  return 0;
}

static item ring_pop(crt_chan *ch) {
  item it = ch->ring[ch->head];
  ch->head = (ch->head + 1) % ch->rcap;
  ch->count--;
  return it;
}

/* ---- waiter queues ------------------------------------------------------ */

static _Thread_local crt_waiter *free_waiters;

/* Each thread encodes into one reusable buffer; a small result is copied
 * into the item, a large one takes the buffer's memory along. */
static _Thread_local crt_buf scratch;

static crt_waiter *waiter_new(void) {
  crt_waiter *w = free_waiters;
  if (w)
    free_waiters = w->next;
  else
    w = malloc(sizeof *w);
  if (w)
    memset(w, 0, sizeof *w);
  return w;
}

/* Free the calling thread's recycled waiters (runtime shutdown). */
void crt_chan_thread_cleanup(void) {
  crt_buf_free(&scratch);
  crt_buf_init(&scratch);
  while (free_waiters) {
    crt_waiter *w = free_waiters;
    free_waiters = w->next;
    free(w);
  }
}

static void waiter_free(crt_waiter *w) {
  item_free(&w->val);
  if (w->ch)
    crt_chan_release(w->ch); /* a waiter keeps its channel alive */
  w->next = free_waiters;
  free_waiters = w;
}

static void wq_push(wqueue *q, crt_waiter *w) {
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail)
    q->tail->next = w;
  else
    q->head = w;
  q->tail = w;
  w->queued = 1;
}

static void wq_remove(wqueue *q, crt_waiter *w) {
  if (!w->queued)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    q->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    q->tail = w->prev;
  w->prev = w->next = NULL;
  w->queued = 0;
}

/* Take the first waiter of q that can still complete (claiming its select),
 * dropping stale waiters of selects that already fired elsewhere. */
static crt_waiter *wq_claim(wqueue *q) {
  crt_waiter *w;
  while ((w = q->head)) {
    wq_remove(q, w);
    int expected = -1;
    if (!w->sel || atomic_compare_exchange_strong(&w->sel->fired, &expected, w->index)) {
      w->done = 1;
      return w;
    }
  }
  return NULL;
}

/* ---- waking ------------------------------------------------------------- */

static void post_wake(crt_post *p) {
  crt_waiter *w = (crt_waiter *)((char *)p - offsetof(crt_waiter, post));
  crt_task_wake(w->task, 0);
}

/* Wake the owner of a claimed waiter, after its value moved. `pushed`
 * values were pushed on a local task's own stack. */
static void wake(crt_waiter *w, int pushed) {
  if (w->tc) {
    crt_tctx_signal(w->tc);
  } else if (crt_rt_on_loop_thread(w->rt)) {
    crt_task_wake(w->task, pushed);
  } else {
    w->post.fn = post_wake;
    crt_rt_post(w->rt, &w->post);
  }
}

/* ---- moving values ------------------------------------------------------ */

/* The codec's error prefix for a send, without formatting per message. */
static const char *cannot_send(const char *fname) {
  if (strcmp(fname, "channel:try_send") == 0)
    return "channel:try_send: cannot send";
  if (strcmp(fname, "crt.select") == 0)
    return "crt.select: cannot send";
  return "channel:send: cannot send";
}

/* Encode the value at the top of L (popped) as an item; raises (holding
 * nothing) when it cannot be sent. */
static item encode_item(lua_State *L, const char *fname) {
  item it = {ITEM_NONE, 0, NULL, 0, {0}};
  crt_buf_reset(&scratch);
  if (crt_codec_encode(L, lua_gettop(L), 1, &scratch, 0, cannot_send(fname), 0) != 0) {
    crt_buf_reset(&scratch);
    lua_error(L); /* the message the codec pushed */
  }
  lua_pop(L, 1);
  if (scratch.len <= ITEM_INLINE && scratch.nchans == 0) {
    it.kind = ITEM_SMALL;
    it.len = (uint32_t)scratch.len;
    memcpy(it.small, scratch.data, scratch.len);
    return it;
  }
  crt_buf *b = malloc(sizeof *b);
  if (!b) {
    crt_buf_reset(&scratch);
    luaL_error(L, "%s: not enough memory", fname);
    return it; /* not reached */
  }
  *b = scratch; /* the item takes the memory (and the channel references) */
  crt_buf_init(&scratch);
  it.kind = ITEM_BUF;
  it.buf = b;
  return it;
}

/* Push the value of an item onto L and release the item. */
static void push_item(lua_State *L, item *it) {
  if (it->kind == ITEM_REF) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &store_key);
    lua_rawgeti(L, -1, it->ref);
    luaL_unref(L, -2, it->ref);
    lua_remove(L, -2);
    it->kind = ITEM_NONE;
  } else if (it->kind == ITEM_BUF || it->kind == ITEM_SMALL) {
    int n = it->kind == ITEM_SMALL
                ? crt_codec_decode(L, it->small, it->len, CRT_CODEC_FUNCTIONS)
                : crt_codec_decode(L, it->buf->data, it->buf->len, CRT_CODEC_FUNCTIONS);
    item_free(it);
    if (n < 0)
      lua_error(L);
    if (n == 0)
      lua_pushnil(L);
  } else {
    lua_pushnil(L);
  }
}

/* The value at the top of L (popped) as a queue item of ch. */
static item make_item(lua_State *L, crt_chan *ch, const char *fname) {
  item it = {ITEM_NONE, 0, NULL, 0, {0}};
  if (ch->shared) {
    it = encode_item(L, fname);
  } else {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &store_key);
    lua_rotate(L, -2, 1);
    it.ref = luaL_ref(L, -2);
    lua_pop(L, 1);
    it.kind = ITEM_REF;
  }
  return it;
}

/* A parked sender's value onto L (local: copied from its own stack). */
static void push_sender_value(lua_State *L, crt_waiter *w) {
  if (w->val.kind != ITEM_NONE) {
    push_item(L, &w->val);
    return;
  }
  lua_State *co = crt_task_co(w->task);
  lua_checkstack(co, 1);
  lua_pushvalue(co, w->slot);
  lua_xmove(co, L, 1);
}

/* ---- making a channel shared (called by the codec) ------------------------ */

int crt_chan_share(lua_State *L, crt_chan *ch, uint64_t *id) {
  if (!ch->shared) {
    /* Queued local values become encoded copies, in order. Parked local
     * waiters keep their values on their own stacks; they are tasks of this
     * same thread, and are served the same way after the switch since
     * push_sender_value handles both. */
    for (size_t i = 0; i < ch->count; i++) {
      item *it = &ch->ring[(ch->head + i) % ch->rcap];
      if (it->kind != ITEM_REF)
        continue;
      push_item(L, it);
      crt_buf *b = malloc(sizeof *b);
      if (!b) {
        lua_pop(L, 1);
        lua_pushliteral(L, "not enough memory");
        return -1;
      }
      crt_buf_init(b);
      if (crt_codec_encode(L, lua_gettop(L), 1, b, 0, "cannot share a channel holding", 0) != 0) {
        crt_buf_free(b);
        free(b);
        lua_remove(L, -2);
        return -1;
      }
      lua_pop(L, 1);
      it->kind = ITEM_BUF;
      it->buf = b;
    }
    pthread_mutex_lock(&reg_mu);
    int rc = reg_insert(ch);
    if (rc == 0)
      ch->shared = 1;
    pthread_mutex_unlock(&reg_mu);
    if (rc != 0) {
      lua_pushliteral(L, "not enough memory");
      return -1;
    }
  }
  *id = ch->id;
  return 0;
}

int crt_chan_push_id(lua_State *L, uint64_t id) {
  pthread_mutex_lock(&reg_mu);
  size_t j = reg_find(id);
  crt_chan *ch = NULL;
  if (j != (size_t)-1 && atomic_load(&reg_slots[j]->refs) > 0) {
    ch = reg_slots[j];
    crt_chan_retain(ch);
  }
  pthread_mutex_unlock(&reg_mu);
  if (!ch)
    return -1;
  push_proxy(L, ch);
  crt_chan_release(ch);
  return 0;
}

/* ---- operations ------------------------------------------------------------ */

/* What a send or a receive can do now, decided under the channel's lock by
 * the cores below; the callers finish the work after unlocking. */
enum { ST_WAIT, ST_PEER, ST_ITEM, ST_CLOSED };

/* Lock held. ST_PEER: a parked receiver *r was claimed; ST_ITEM: there is
 * room in the queue; ST_WAIT; ST_CLOSED. */
static int send_core(crt_chan *ch, crt_waiter **r) {
  if (ch->closed)
    return ST_CLOSED;
  if ((*r = wq_claim(&ch->recvq)))
    return ST_PEER;
  return ch->count < ch->cap ? ST_ITEM : ST_WAIT;
}

/* Lock held, shared channel: hand the encoded value over or queue it.
 * Returns -1 when the queue cannot grow (the value is still the caller's). */
static int send_commit(crt_chan *ch, int st, crt_waiter *r, item *enc) {
  if (st == ST_PEER) {
    r->val = *enc;
  } else if (ring_push(ch, *enc) != 0) {
    return -1;
  }
  enc->kind = ITEM_NONE;
  enc->buf = NULL;
  atomic_fetch_add(&ch->sent, 1);
  return 0;
}

/* Unlocked, local channel: hand the value at stack index vidx over or queue
 * it (a local channel has no other thread: no lock needed). */
static void send_local(lua_State *L, crt_chan *ch, int st, crt_waiter *r, int vidx) {
  lua_pushvalue(L, vidx);
  if (st == ST_PEER) {
    lua_State *co = crt_task_co(r->task);
    lua_checkstack(co, 2);
    lua_xmove(L, co, 1);
    atomic_fetch_add(&ch->sent, 1);
    crt_task_wake(r->task, 1);
  } else {
    item it = make_item(L, ch, fname_send);
    if (ring_push(ch, it) != 0) {
      item_free(&it);
      luaL_error(L, "%s: not enough memory", fname_send);
    }
    atomic_fetch_add(&ch->sent, 1);
  }
}

/* Lock held. ST_ITEM: *it was taken from the queue (and a parked sender *s
 * claimed to refill it: a shared one's value already moved in); ST_PEER: a
 * parked sender *s was claimed (a shared one's value moved to *it); ST_CLOSED
 * (closed and drained); ST_WAIT. */
static int recv_core(crt_chan *ch, item *it, crt_waiter **s) {
  it->kind = ITEM_NONE;
  if (ch->count > 0) {
    *it = ring_pop(ch);
    *s = wq_claim(&ch->sendq);
    if (*s && (*s)->val.kind != ITEM_NONE) {
      ring_push(ch, (*s)->val); /* cannot fail: a slot was just freed */
      (*s)->val.kind = ITEM_NONE;
      (*s)->val.buf = NULL;
      atomic_fetch_add(&ch->sent, 1);
    }
    atomic_fetch_add(&ch->received, 1);
    return ST_ITEM;
  }
  if ((*s = wq_claim(&ch->sendq))) {
    *it = (*s)->val;
    (*s)->val.kind = ITEM_NONE;
    (*s)->val.buf = NULL;
    atomic_fetch_add(&ch->sent, 1);
    atomic_fetch_add(&ch->received, 1);
    return ST_PEER;
  }
  return ch->closed ? ST_CLOSED : ST_WAIT;
}

/* Unlocked: push the received value on L and wake the sender involved. */
static void recv_finish(lua_State *L, crt_chan *ch, int st, item *it, crt_waiter *s) {
  if (st == ST_CLOSED) {
    lua_pushnil(L);
    return;
  }
  if (st == ST_PEER && it->kind == ITEM_NONE)
    push_sender_value(L, s); /* local: copy it from the sender's stack */
  else
    push_item(L, it);
  if (st == ST_ITEM && s && !ch->shared) {
    /* A local sender parked on a full channel: its value takes the room. */
    push_sender_value(L, s);
    ring_push(ch, make_item(L, ch, fname_send));
  }
  if (s)
    wake(s, 0);
}

/* A waiter for the calling task or thread, made only when an operation must
 * wait (under the channel's lock: it touches no Lua state). NULL when out of
 * memory. */
static crt_waiter *waiter_make(crt_chan *ch, int op, crt_task *t, crt_tctx *tc) {
  crt_waiter *w = waiter_new();
  if (!w)
    return NULL;
  crt_chan_retain(ch);
  w->ch = ch;
  w->op = op;
  w->task = t;
  w->tc = tc;
  w->rt = t ? crt_task_rt(t) : NULL;
  return w;
}

/* Send the value at stack index vidx. Returns 1 when it was handed to a
 * receiver or queued. Otherwise 0; when the caller can wait (t or tc given)
 * a waiter was queued as a parked sender and stored in *wout (shared: the
 * value encoded into it; local: the value stays at vidx on the caller's
 * stack). Raises when ch is closed. */
static int send_op(lua_State *L, crt_chan *ch, const char *fname, int vidx, crt_task *t,
                   crt_tctx *tc, crt_waiter **wout) {
  item enc = {ITEM_NONE, 0, NULL, 0, {0}};
  /* Read once: only this thread can turn a local channel shared, and not
   * during this call. */
  const int shared = ch->shared;
  if (shared) {
    lua_pushvalue(L, vidx);
    enc = encode_item(L, fname); /* outside the lock: it may be long */
  }
  crt_waiter *r = NULL;
  lock(ch);
  int st = send_core(ch, &r);
  if (st == ST_CLOSED) {
    unlock(ch);
    item_free(&enc);
    return crt_errorf(L, fname, "channel is closed");
  }
  if (st == ST_WAIT) {
    crt_waiter *w = (t || tc) ? waiter_make(ch, OP_SEND, t, tc) : NULL;
    if (w) {
      w->val = enc;
      w->slot = vidx;
      wq_push(&ch->sendq, w);
      *wout = w;
    }
    unlock(ch);
    if (!w) {
      item_free(&enc);
      if (t || tc)
        return luaL_error(L, "%s: not enough memory", fname);
    }
    return 0;
  }
  if (shared) {
    int rc = send_commit(ch, st, r, &enc);
    unlock(ch);
    if (rc != 0) {
      item_free(&enc);
      return luaL_error(L, "%s: not enough memory", fname);
    }
    if (r)
      wake(r, 0);
    return 1;
  }
  unlock(ch);
  send_local(L, ch, st, r, vidx);
  return 1;
}

/* Receive: push the value (nil once closed and drained) and return 1, or
 * (when the caller can wait) queue a waiter, store it in *wout, return 0. */
static int recv_op(lua_State *L, crt_chan *ch, crt_task *t, crt_tctx *tc, crt_waiter **wout) {
  item it;
  crt_waiter *s = NULL;
  lock(ch);
  int st = recv_core(ch, &it, &s);
  if (st == ST_WAIT) {
    crt_waiter *w = (t || tc) ? waiter_make(ch, OP_RECV, t, tc) : NULL;
    if (w) {
      wq_push(&ch->recvq, w);
      *wout = w;
    }
    unlock(ch);
    if (!w && (t || tc))
      return luaL_error(L, "channel:recv: not enough memory");
    return 0;
  }
  unlock(ch);
  recv_finish(L, ch, st, &it, s);
  return 1;
}

/* ---- parking one operation --------------------------------------------------- */

static void single_unpark(crt_task *t, void *data) {
  crt_waiter *w = data;
  crt_chan *ch = w->ch;
  lock(ch);
  int done = w->done;
  if (!done)
    wq_remove(w->op == OP_RECV ? &ch->recvq : &ch->sendq, w);
  unlock(ch);
  if (done) {
    /* Claimed by another thread, whose wake is posted: keep the result. */
    crt_task_defer_unpark(t);
    return;
  }
  if (w->held)
    crt_rt_hold(w->rt, -1);
  waiter_free(w);
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  crt_waiter *w = (crt_waiter *)ctx;
  if (w->held)
    crt_rt_hold(w->rt, -1);
  /* A local value was pushed on our stack by the sender (the top); a
   * shared one waits in w->val; a close gives nil. */
  if (w->closed)
    lua_pushnil(L);
  else if (w->val.kind != ITEM_NONE)
    push_item(L, &w->val);
  waiter_free(w);
  return 1;
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  crt_waiter *w = (crt_waiter *)ctx;
  if (w->held)
    crt_rt_hold(w->rt, -1);
  int closed = w->closed;
  waiter_free(w);
  if (closed)
    return crt_errorf(L, fname_send, "channel is closed");
  lua_pushboolean(L, 1);
  return 1;
}

/* A thread without a loop waits for its queued waiter to be claimed. An
 * interrupt (cancellation of the job) raises crt.Cancelled, unless the
 * operation completed meanwhile: then it completes, and the interrupt stays
 * set for the next wait or instruction check. */
static void block(lua_State *L, crt_waiter *w) {
  for (;;) {
    int r = crt_tctx_wait(w->tc, -1);
    lock(w->ch);
    int done = w->done;
    if (!done && r < 0)
      wq_remove(w->op == OP_RECV ? &w->ch->recvq : &w->ch->sendq, w);
    unlock(w->ch);
    if (done)
      return;
    if (r < 0) {
      waiter_free(w);
      crt_sched_push_cancelled(L);
      lua_error(L);
    }
  }
}

/* Park the calling task, or block the calling thread, on queued waiter w
 * whose continuation is k. */
static int wait_for(lua_State *L, crt_waiter *w, lua_KFunction k) {
  if (w->tc) {
    block(L, w);
    return k(L, LUA_OK, (lua_KContext)w);
  }
  if (w->ch->shared) {
    w->held = 1; /* another thread may wake us: the loop must stay alive */
    crt_rt_hold(w->rt, 1);
  }
  return crt_task_park(L, w->task, single_unpark, w, k, (lua_KContext)w);
}

static const char *const outside_task =
    "must be called from a task to wait (in module mode wrap the code in crt.run)";

static int chan_send(lua_State *L) {
  crt_chan *ch = check_chan(L, fname_send);
  if (lua_type(L, 2) <= LUA_TNIL)
    return crt_argerror(L, fname_send, 2, "value expected, got nil");
  crt_task *t = crt_task_current(L);
  crt_tctx *tc = t ? NULL : crt_tctx_current();
  crt_waiter *w = NULL;
  if (!send_op(L, ch, fname_send, 2, t, tc, &w)) {
    if (!w)
      return crt_errorf(L, fname_send, "channel is full: %s", outside_task);
    return wait_for(L, w, send_k);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int chan_recv(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:recv");
  crt_task *t = crt_task_current(L);
  crt_tctx *tc = t ? NULL : crt_tctx_current();
  crt_waiter *w = NULL;
  if (recv_op(L, ch, t, tc, &w))
    return 1;
  if (!w)
    return crt_errorf(L, "channel:recv", "channel is empty: %s", outside_task);
  return wait_for(L, w, recv_k);
}

static int chan_try_send(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:try_send");
  if (lua_type(L, 2) <= LUA_TNIL)
    return crt_argerror(L, "channel:try_send", 2, "value expected, got nil");
  lua_pushboolean(L, send_op(L, ch, "channel:try_send", 2, NULL, NULL, NULL));
  return 1;
}

static int chan_try_recv(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:try_recv");
  if (!recv_op(L, ch, NULL, NULL, NULL))
    lua_pushnil(L);
  return 1;
}

int crt_chan_offer(lua_State *L, crt_chan *ch) {
  lock(ch);
  int closed = ch->closed;
  unlock(ch);
  int ok = closed ? 0 : send_op(L, ch, fname_send, lua_gettop(L), NULL, NULL, NULL);
  lua_pop(L, 1);
  return ok;
}

static int chan_close(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:close");
  lock(ch);
  if (ch->closed) {
    unlock(ch);
    return 0;
  }
  ch->closed = 1;
  /* Every parked receiver gets nil, every parked sender an error. */
  crt_waiter *w, *woken = NULL;
  while ((w = wq_claim(&ch->recvq)) || (w = wq_claim(&ch->sendq))) {
    w->closed = 1;
    if (w->sel)
      w->sel->closed = 1;
    w->next = woken;
    woken = w;
  }
  unlock(ch);
  while (woken) {
    w = woken;
    woken = w->next;
    w->next = NULL;
    wake(w, 0);
  }
  return 0;
}

static int chan_len(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:__len");
  lock(ch);
  size_t n = ch->count;
  unlock(ch);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int chan_iter(lua_State *L) {
  check_chan(L, "channel:iter");
  lua_getfield(L, 1, "recv"); /* the method, with its upvalue */
  lua_pushvalue(L, 1);
  return 2;
}

static int chan_is_closed(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:closed");
  lock(ch);
  int c = ch->closed;
  unlock(ch);
  lua_pushboolean(L, c);
  return 1;
}

static int chan_stats(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:stats");
  lock(ch);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)ch->count);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, ch->cap == CRT_CHAN_UNBOUNDED ? -1 : (lua_Integer)ch->cap);
  lua_setfield(L, -2, "capacity");
  lua_pushboolean(L, ch->closed);
  lua_setfield(L, -2, "closed");
  lua_pushboolean(L, ch->shared);
  lua_setfield(L, -2, "shared");
  unlock(ch);
  lua_pushinteger(L, (lua_Integer)atomic_load(&ch->sent));
  lua_setfield(L, -2, "sent");
  lua_pushinteger(L, (lua_Integer)atomic_load(&ch->received));
  lua_setfield(L, -2, "received");
  return 1;
}

static int chan_tostring(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:__tostring");
  lua_pushfstring(L, "crt.channel: %p", (void *)ch);
  return 1;
}

static int chan_gc(lua_State *L) {
  proxy *p = luaL_testudata(L, 1, CRT_CHAN_MT);
  if (p && p->ch) {
    crt_chan_release(p->ch);
    p->ch = NULL;
  }
  return 0;
}

/* ---- select --------------------------------------------------------------- */

/* Lock (or unlock) every shared channel of a select once, in address order,
 * so that two selects over the same channels cannot deadlock. */
static int cmp_chan(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)(*(crt_chan *const *)a), y = (uintptr_t)(*(crt_chan *const *)b);
  return x < y ? -1 : x > y;
}

static void lock_all(crt_chan **sorted, int n) {
  for (int i = 0; i < n; i++)
    if (i == 0 || sorted[i] != sorted[i - 1])
      lock(sorted[i]);
}

static void unlock_all(crt_chan **sorted, int n) {
  for (int i = n - 1; i >= 0; i--)
    if (i == 0 || sorted[i] != sorted[i - 1])
      unlock(sorted[i]);
}

static void sel_detach(crt_sel *sel) {
  for (int i = 0; i < sel->nwaiters; i++) {
    crt_waiter *w = &sel->waiters[i];
    crt_chan *ch = w->ch;
    lock(ch);
    wq_remove(w->op == OP_RECV ? &ch->recvq : &ch->sendq, w);
    unlock(ch);
  }
}

static void sel_free(crt_sel *sel) {
  for (int i = 0; i < sel->nwaiters; i++) {
    item_free(&sel->waiters[i].val);
    if (sel->waiters[i].ch)
      crt_chan_release(sel->waiters[i].ch);
  }
  free(sel->waiters);
  free(sel);
}

static void sel_unpark(crt_task *t, void *data) {
  crt_sel *sel = data;
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

/* The fired case: push index, value (nil for sends and closed channels). */
static int select_done(lua_State *L, crt_sel *sel) {
  sel_detach(sel);
  int idx = atomic_load(&sel->fired);
  crt_waiter *w = &sel->waiters[idx - 1];
  lock(w->ch); /* see what the claimer wrote under this lock */
  int closed = sel->closed;
  unlock(w->ch);
  if (sel->held)
    crt_rt_hold(w->rt, -1);
  if (w->op == OP_SEND) {
    sel_free(sel);
    if (closed)
      return crt_errorf(L, "crt.select", "channel of case #%d is closed", idx);
    lua_pushinteger(L, idx);
    lua_pushnil(L);
    return 2;
  }
  /* Receive: a local value was pushed on our stack (the top) unless the
   * channel closed; a shared one is in the waiter. */
  if (closed)
    lua_pushnil(L);
  else if (w->val.kind != ITEM_NONE)
    push_item(L, &w->val);
  sel_free(sel);
  lua_pushinteger(L, idx);
  lua_insert(L, -2);
  return 2;
}

static int select_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  crt_task *t = crt_task_current(L);
  if (t && crt_task_timed_out(t)) {
    lua_pushnil(L); /* the unpark hook freed the select */
    lua_pushliteral(L, "timeout");
    return 2;
  }
  return select_done(L, (crt_sel *)ctx);
}

/* A thread without a loop waits for a case, an interrupt or the timeout. */
static int select_block(lua_State *L, crt_sel *sel, crt_tctx *tc, double timeout) {
  double deadline = timeout >= 0 ? (double)uv_hrtime() / 1e9 + timeout : -1;
  for (;;) {
    if (atomic_load(&sel->fired) > 0)
      return select_done(L, sel);
    double left = -1;
    if (deadline >= 0) {
      left = deadline - (double)uv_hrtime() / 1e9;
      if (left < 0)
        left = 0;
    }
    int r = crt_tctx_wait(tc, left);
    if (atomic_load(&sel->fired) > 0)
      return select_done(L, sel);
    if (r < 0 || (r == 0 && deadline >= 0)) {
      int expected = -1;
      if (!atomic_compare_exchange_strong(&sel->fired, &expected, 0))
        return select_done(L, sel); /* a case won the race */
      sel_detach(sel);
      sel_free(sel);
      if (r < 0) {
        crt_sched_push_cancelled(L);
        return lua_error(L);
      }
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
  }
}

static int chan_select(lua_State *L) {
  const char *fname = "crt.select";
  if (!lua_istable(L, 1))
    return crt_typeerror(L, fname, 1, "table");
  lua_settop(L, 1);
  double timeout = -1;
  if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) != lua_tonumber(L, -1))
      return crt_errorf(L, fname, "bad argument #1 (timeout must be a number)");
    timeout = lua_tonumber(L, -1);
    if (timeout < 0)
      timeout = 0;
  }
  lua_pop(L, 1);
  int n = (int)lua_rawlen(L, 1);
  if (n == 0 && timeout < 0)
    return crt_errorf(L, fname, "bad argument #1 (no cases and no timeout)");
  luaL_checkstack(L, 2 * n + 4, "too many select cases");
  /* Stack: 1 cases, then per case i: 2i = channel proxy, 2i+1 = value. */
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 1, i) != LUA_TTABLE)
      return crt_errorf(L, fname, "bad case #%d (table expected, got %s)", i, luaL_typename(L, -1));
    lua_rawgeti(L, -1, 1);
    if (!crt_chan_test(L, -1))
      return crt_errorf(L, fname, "bad case #%d (channel expected, got %s)", i,
                        luaL_typename(L, -1));
    lua_rawgeti(L, -2, 2);
    const char *op = lua_tostring(L, -1);
    int send = op && strcmp(op, "send") == 0;
    if (!send && !(op && strcmp(op, "recv") == 0))
      return crt_errorf(L, fname, "bad case #%d (\"recv\" or \"send\" expected)", i);
    lua_pop(L, 1);
    if (send) {
      lua_rawgeti(L, -2, 3);
      if (lua_isnil(L, -1))
        return crt_errorf(L, fname, "bad case #%d (value to send expected, got nil)", i);
    } else {
      lua_pushnil(L);
    }
    lua_remove(L, -3);
  }
  crt_task *t = crt_task_current(L);
  crt_tctx *tc = t ? NULL : crt_tctx_current();
  if (n == 0) {
    /* No case: a sleep that answers like a select that timed out. */
    if (timeout == 0 || !t) {
      if (!t && tc && timeout > 0)
        crt_tctx_wait(tc, timeout);
      else if (!t && timeout > 0)
        return crt_errorf(L, fname, "%s", outside_task);
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    crt_task_set_deadline(t, timeout);
    return crt_task_park(L, t, NULL, NULL, select_k, 0);
  }

  /* One waiter per case, filled before any lock is taken (encoding the
   * values to send on shared channels can fail): nothing is held when we
   * raise. */
  crt_sel *sel = calloc(1, sizeof *sel);
  crt_waiter *ws = sel ? calloc((size_t)n, sizeof *ws) : NULL;
  crt_chan **sorted = ws ? malloc((size_t)n * sizeof *sorted) : NULL;
  if (!sorted) {
    free(ws);
    free(sel);
    return luaL_error(L, "crt.select: not enough memory");
  }
  atomic_init(&sel->fired, -1);
  sel->waiters = ws;
  sel->nwaiters = n;
  for (int i = 1; i <= n; i++) {
    crt_waiter *w = &ws[i - 1];
    w->ch = crt_chan_test(L, 2 * i);
    crt_chan_retain(w->ch);
    sorted[i - 1] = w->ch;
    w->sel = sel;
    w->task = t;
    w->rt = t ? crt_task_rt(t) : NULL;
    w->tc = tc;
    w->index = i;
    w->op = lua_isnil(L, 2 * i + 1) ? OP_RECV : OP_SEND;
    if (w->op == OP_SEND && w->ch->shared) {
      crt_buf *b = malloc(sizeof *b);
      if (b)
        crt_buf_init(b);
      if (!b || crt_codec_encode(L, 2 * i + 1, 1, b, 0, "crt.select: cannot send", 0) != 0) {
        if (b) {
          crt_buf_free(b);
          free(b);
        } else {
          lua_pushliteral(L, "crt.select: not enough memory");
        }
        free(sorted);
        sel_free(sel);
        return lua_error(L);
      }
      w->val.buf = b;
      w->val.kind = ITEM_BUF;
    } else if (w->op == OP_SEND) {
      w->slot = 2 * i + 1;
    }
  }
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_chan);

  /* Under every lock: the first case that can complete now wins (in case
   * order); otherwise every waiter is queued before any lock is released,
   * so no completion can be missed. */
  lock_all(sorted, n);
  int chosen = 0, st = ST_WAIT;
  crt_waiter *peer = NULL;
  item it = {ITEM_NONE, 0, NULL, 0, {0}};
  for (int i = 1; i <= n && !chosen; i++) {
    crt_waiter *w = &ws[i - 1];
    if (w->op == OP_SEND) {
      st = send_core(w->ch, &peer);
      if (st == ST_CLOSED) {
        unlock_all(sorted, n);
        free(sorted);
        sel_free(sel);
        return crt_errorf(L, fname, "channel of case #%d is closed", i);
      }
      if (st != ST_WAIT) {
        chosen = i;
        if (w->ch->shared && send_commit(w->ch, st, peer, &w->val) != 0) {
          unlock_all(sorted, n);
          free(sorted);
          sel_free(sel);
          return luaL_error(L, "crt.select: not enough memory");
        }
      }
    } else {
      st = recv_core(w->ch, &it, &peer);
      if (st != ST_WAIT)
        chosen = i;
    }
  }
  if (!chosen && timeout != 0 && (t || tc)) {
    for (int i = 0; i < n; i++) {
      crt_waiter *w = &ws[i];
      wq_push(w->op == OP_RECV ? &w->ch->recvq : &w->ch->sendq, w);
    }
  }
  unlock_all(sorted, n);
  free(sorted);

  if (chosen) {
    crt_waiter *w = &ws[chosen - 1];
    if (w->op == OP_SEND) {
      if (w->ch->shared) {
        if (peer)
          wake(peer, 0);
      } else {
        send_local(L, w->ch, st, peer, w->slot);
      }
      sel_free(sel);
      lua_pushinteger(L, chosen);
      lua_pushnil(L);
      return 2;
    }
    crt_chan *ch = w->ch; /* kept alive by its proxy on our stack */
    sel_free(sel);
    recv_finish(L, ch, st, &it, peer);
    lua_pushinteger(L, chosen);
    lua_insert(L, -2);
    return 2;
  }
  if (timeout == 0 || (!t && !tc)) {
    sel_free(sel);
    if (timeout != 0)
      return crt_errorf(L, fname, "%s", outside_task);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (tc)
    return select_block(L, sel, tc, timeout);
  for (int i = 0; i < n && !sel->held; i++)
    if (ws[i].ch->shared) {
      sel->held = 1;
      crt_rt_hold(ws[i].rt, 1);
    }
  if (timeout > 0)
    crt_task_set_deadline(t, timeout);
  return crt_task_park(L, t, sel_unpark, sel, select_k, (lua_KContext)sel);
}

/* ---- crt.channel ---------------------------------------------------------- */

static int chan_new_lua(lua_State *L) {
  size_t cap = CRT_CHAN_UNBOUNDED;
  if (!lua_isnoneornil(L, 1)) {
    int isint;
    lua_Integer n = lua_tointegerx(L, 1, &isint);
    if (!isint)
      return crt_typeerror(L, "crt.channel", 1, "integer");
    if (n < 0)
      return crt_argerror(L, "crt.channel", 1, "capacity must be >= 0");
    cap = (size_t)n;
  }
  /* The proxy first: once the channel exists, nothing may raise before
   * the proxy (its finalizer) holds it. */
  proxy *p = lua_newuserdatauv(L, sizeof *p, 0);
  crt_chan *ch = chan_new(cap);
  if (!ch)
    return luaL_error(L, "crt.channel: not enough memory");
  p->ch = ch; /* the proxy holds chan_new's reference */
  luaL_setmetatable(L, CRT_CHAN_MT);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &proxies_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, ch);
  lua_pop(L, 1);
  return 1;
}

int crt_open_channel(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", chan_send},         {"recv", chan_recv},   {"try_send", chan_try_send},
      {"try_recv", chan_try_recv}, {"close", chan_close}, {"iter", chan_iter},
      {"closed", chan_is_closed},  {"stats", chan_stats}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {
      {"__len", chan_len}, {"__gc", chan_gc}, {"__tostring", chan_tostring}, {NULL, NULL}};
  if (luaL_newmetatable(L, CRT_CHAN_MT)) {
    luaL_newlibtable(L, methods);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, metamethods, 1);
  }
  lua_pop(L, 1);
  /* The store of queued local values, and the weak proxy cache. */
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &store_key);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &proxies_key);
  /* crt.channel and crt.select go into the table at the top. */
  lua_pushcfunction(L, chan_new_lua);
  lua_setfield(L, -2, "channel");
  lua_pushcfunction(L, chan_select);
  lua_setfield(L, -2, "select");
  return 0;
}
