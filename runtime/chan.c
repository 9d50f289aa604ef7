/*
 * chan.c - the channel engine: a bounded, unbounded or rendezvous queue of
 * values with queues of parked senders and receivers (see chan_impl.h for
 * the threads, values and waiters), the process-wide registry of shared
 * channels, sharing for the codec, and the single operations (send, recv,
 * close, ...) as C functions that return status codes (chan.h). select is
 * in select.c; the Lua face in bindings/channel.c.
 *
 * Threads: the calling thread owns L; a local channel is touched by its
 * owner's loop thread only, a shared one under its lock by any thread; the
 * registry under reg_mu (taken with no channel lock held).
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "chan_impl.h"
#include "codec.h"

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

crt_chan *crt_chan_new(size_t cap) {
  crt_chan *ch = calloc(1, sizeof *ch);
  if (!ch)
    return NULL;
  atomic_init(&ch->refs, 1);
  ch->cap = cap;
  ch->id = atomic_fetch_add(&next_id, 1);
  pthread_mutex_init(&ch->mu, NULL);
  return ch;
}

static void chan_free(crt_chan *ch) {
  /* A local channel's queued references die with the owner's store table
   * entries only if we unref them; a local channel is freed on its owner's
   * thread, but possibly while the state closes, so the references are left
   * to the state (the store table is collected with it). */
  for (size_t i = 0; i < ch->count; i++)
    crt_chan_item_free(&ch->ring[(ch->head + i) % ch->rcap]);
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

/* ---- proxies ------------------------------------------------------------ */

void crt_chan_state_init(lua_State *L) {
  /* The store of queued local values, and the weak proxy cache. */
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &store_key);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &proxies_key);
}

void crt_chan_push_proxy(lua_State *L, crt_chan *ch) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &proxies_key);
  if (lua_rawgetp(L, -1, ch) == LUA_TUSERDATA) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  crt_chan **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = ch;
  crt_chan_retain(ch);
  luaL_setmetatable(L, CRT_CHAN_MT);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, ch);
  lua_remove(L, -2);
}

crt_chan *crt_chan_push_new(lua_State *L, size_t cap) {
  /* The proxy first, empty: if anything below runs out of memory, the
   * proxy's finalizer (which skips an empty box) or the proxy itself owns
   * the channel, so nothing leaks. */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &proxies_key);
  crt_chan **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = NULL;
  luaL_setmetatable(L, CRT_CHAN_MT);
  crt_chan *ch = crt_chan_new(cap);
  if (!ch) {
    lua_pop(L, 2);
    return NULL;
  }
  *p = ch; /* the proxy holds crt_chan_new's reference */
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, ch);
  lua_remove(L, -2);
  return ch;
}

crt_chan *crt_chan_test(lua_State *L, int idx) {
  crt_chan **p = luaL_testudata(L, idx, CRT_CHAN_MT);
  return p ? *p : NULL;
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

/* ---- waiters ------------------------------------------------------------ */

/* Recycled single-operation waiters of this thread, chained by link.next. */
static _Thread_local crt_waiter *free_waiters;

/* Each thread encodes into one reusable buffer; a small result is copied
 * into the item, a large one takes the buffer's memory along. */
static _Thread_local crt_buf scratch;

static crt_waiter *waiter_new(void) {
  crt_waiter *w = free_waiters;
  if (w)
    free_waiters = crt_container_of(w->link.next, crt_waiter, link);
  else
    w = malloc(sizeof *w);
  if (w)
    memset(w, 0, sizeof *w);
  return w;
}

void crt_chan_thread_cleanup(void) {
  crt_buf_free(&scratch);
  crt_buf_init(&scratch);
  while (free_waiters) {
    crt_waiter *w = free_waiters;
    free_waiters = crt_container_of(w->link.next, crt_waiter, link);
    free(w);
  }
}

static void waiter_free(crt_waiter *w) {
  crt_chan_item_free(&w->val);
  if (w->ch)
    crt_chan_release(w->ch); /* a waiter keeps its channel alive */
  w->link.next = free_waiters ? &free_waiters->link : NULL;
  free_waiters = w;
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

/* ---- waking ------------------------------------------------------------- */

static void post_wake(crt_post *p) {
  crt_waiter *w = crt_container_of(p, crt_waiter, post);
  crt_task_wake(w->task, 0);
}

void crt_chan_wake(crt_waiter *w, int pushed) {
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

/* Encode the value at the top of L (popped on success) as an item. Returns
 * CRT_CHAN_OK, CRT_CHAN_ERR (the codec's message pushed) or
 * CRT_CHAN_ENOMEM. */
static int encode_item(lua_State *L, const char *what, item *it) {
  crt_buf_reset(&scratch);
  if (crt_codec_encode(L, lua_gettop(L), 1, &scratch, 0, what, 0) != 0) {
    crt_buf_reset(&scratch);
    return CRT_CHAN_ERR;
  }
  lua_pop(L, 1);
  if (scratch.len <= ITEM_INLINE && scratch.nchans == 0) {
    it->kind = ITEM_SMALL;
    it->len = (uint32_t)scratch.len;
    memcpy(it->small, scratch.data, scratch.len);
    return CRT_CHAN_OK;
  }
  crt_buf *b = malloc(sizeof *b);
  if (!b) {
    crt_buf_reset(&scratch);
    return CRT_CHAN_ENOMEM;
  }
  *b = scratch; /* the item takes the memory (and the channel references) */
  crt_buf_init(&scratch);
  it->kind = ITEM_BUF;
  it->buf = b;
  return CRT_CHAN_OK;
}

int crt_chan_push_item(lua_State *L, item *it) {
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
    crt_chan_item_free(it);
    if (n < 0)
      return CRT_CHAN_ERR;
    if (n == 0)
      lua_pushnil(L);
  } else {
    lua_pushnil(L);
  }
  return CRT_CHAN_OK;
}

/* The value at the top of L (popped) as a reference in a local channel. */
static item ref_item(lua_State *L) {
  item it = ITEM_EMPTY;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &store_key);
  lua_rotate(L, -2, 1);
  it.ref = luaL_ref(L, -2);
  lua_pop(L, 1);
  it.kind = ITEM_REF;
  return it;
}

/* A parked sender's value onto L (local: copied from its own stack). */
static int push_sender_value(lua_State *L, crt_waiter *w) {
  if (w->val.kind != ITEM_NONE)
    return crt_chan_push_item(L, &w->val);
  lua_State *co = crt_task_co(w->task);
  lua_checkstack(co, 1);
  lua_pushvalue(co, w->slot);
  lua_xmove(co, L, 1);
  return CRT_CHAN_OK;
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
      crt_chan_push_item(L, it); /* a reference: cannot fail */
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
  crt_chan_push_proxy(L, ch);
  crt_chan_release(ch);
  return 0;
}

/* ---- the cores (see chan_impl.h; select.c calls them through crt_chan_*) ---- */

static inline int send_core(crt_chan *ch, crt_waiter **r) {
  if (ch->closed)
    return ST_CLOSED;
  if ((*r = wq_claim(&ch->recvq)))
    return ST_PEER;
  return ch->count < ch->cap ? ST_ITEM : ST_WAIT;
}

int crt_chan_send_commit(crt_chan *ch, int st, crt_waiter *r, item *enc) {
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

static inline int send_local(lua_State *L, crt_chan *ch, int st, crt_waiter *r, int vidx) {
  lua_pushvalue(L, vidx);
  if (st == ST_PEER) {
    lua_State *co = crt_task_co(r->task);
    lua_checkstack(co, 2);
    lua_xmove(L, co, 1);
    atomic_fetch_add(&ch->sent, 1);
    crt_task_wake(r->task, 1);
  } else {
    item it = ref_item(L);
    if (ring_push(ch, it) != 0) {
      crt_chan_item_free(&it);
      return CRT_CHAN_ENOMEM;
    }
    atomic_fetch_add(&ch->sent, 1);
  }
  return CRT_CHAN_OK;
}

static inline int recv_core(crt_chan *ch, item *it, crt_waiter **s) {
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

static inline int recv_finish(lua_State *L, crt_chan *ch, int st, item *it, crt_waiter *s) {
  if (st == ST_CLOSED) {
    lua_pushnil(L);
    return CRT_CHAN_CLOSED;
  }
  int rc;
  if (st == ST_PEER && it->kind == ITEM_NONE)
    rc = push_sender_value(L, s); /* local: copy it from the sender's stack */
  else
    rc = crt_chan_push_item(L, it);
  if (st == ST_ITEM && s && !ch->shared) {
    /* A local sender parked on a full channel: its value takes the room. */
    push_sender_value(L, s);
    ring_push(ch, ref_item(L)); /* cannot fail: a slot was just freed */
  }
  if (s)
    crt_chan_wake(s, 0);
  return rc;
}

/* ---- operations ------------------------------------------------------------ */

/* Whether the caller can wait, and as whom: a task, or a thread with a tctx. */
static int waiter_for(lua_State *L, crt_task **t, crt_tctx **tc) {
  *t = crt_task_current(L);
  *tc = *t ? NULL : crt_tctx_current();
  return *t || *tc;
}

int crt_chan_send(lua_State *L, crt_chan *ch, int vidx, const char *what, crt_chan_waiter **wait) {
  item enc = ITEM_EMPTY;
  /* Read once: only this thread can turn a local channel shared, and not
   * during this call. */
  const int shared = ch->shared;
  if (shared) {
    lua_pushvalue(L, vidx);
    int rc = encode_item(L, what, &enc); /* outside the lock: it may be long */
    if (rc != CRT_CHAN_OK)
      return rc;
  }
  crt_waiter *r = NULL;
  chan_lock(ch);
  int st = send_core(ch, &r);
  if (st == ST_CLOSED) {
    chan_unlock(ch);
    crt_chan_item_free(&enc);
    return CRT_CHAN_CLOSED;
  }
  if (st == ST_WAIT) {
    crt_task *t;
    crt_tctx *tc;
    if (!wait || !waiter_for(L, &t, &tc)) {
      chan_unlock(ch);
      crt_chan_item_free(&enc);
      return CRT_CHAN_FULL;
    }
    crt_waiter *w = waiter_make(ch, CRT_CHAN_OP_SEND, t, tc);
    if (w) {
      w->val = enc;
      w->slot = vidx;
      wq_push(w);
      *wait = w;
    }
    chan_unlock(ch);
    if (!w) {
      crt_chan_item_free(&enc);
      return CRT_CHAN_ENOMEM;
    }
    return CRT_CHAN_WAIT;
  }
  if (shared) {
    int rc = crt_chan_send_commit(ch, st, r, &enc);
    chan_unlock(ch);
    if (rc != 0) {
      crt_chan_item_free(&enc);
      return CRT_CHAN_ENOMEM;
    }
    if (r)
      crt_chan_wake(r, 0);
    return CRT_CHAN_OK;
  }
  chan_unlock(ch);
  return send_local(L, ch, st, r, vidx);
}

int crt_chan_recv(lua_State *L, crt_chan *ch, crt_chan_waiter **wait) {
  item it;
  crt_waiter *s = NULL;
  chan_lock(ch);
  int st = recv_core(ch, &it, &s);
  if (st == ST_WAIT) {
    crt_task *t;
    crt_tctx *tc;
    if (!wait || !waiter_for(L, &t, &tc)) {
      chan_unlock(ch);
      return CRT_CHAN_EMPTY;
    }
    crt_waiter *w = waiter_make(ch, CRT_CHAN_OP_RECV, t, tc);
    if (w) {
      wq_push(w);
      *wait = w;
    }
    chan_unlock(ch);
    return w ? CRT_CHAN_WAIT : CRT_CHAN_ENOMEM;
  }
  chan_unlock(ch);
  return recv_finish(L, ch, st, &it, s);
}

int crt_chan_offer(lua_State *L, crt_chan *ch) {
  int top = lua_gettop(L);
  chan_lock(ch);
  int closed = ch->closed;
  chan_unlock(ch);
  int rc = closed ? CRT_CHAN_CLOSED : crt_chan_send(L, ch, top, "channel:send: cannot send", NULL);
  lua_settop(L, top - 1);
  return rc == CRT_CHAN_OK;
}

void crt_chan_close(crt_chan *ch) {
  chan_lock(ch);
  if (ch->closed) {
    chan_unlock(ch);
    return;
  }
  ch->closed = 1;
  /* Every parked receiver gets nil, every parked sender an error. */
  crt_list woken = CRT_LIST_INIT;
  crt_waiter *w;
  while ((w = wq_claim(&ch->recvq)) || (w = wq_claim(&ch->sendq))) {
    w->closed = 1;
    if (w->sel)
      w->sel->closed = 1;
    crt_list_push_front(&woken, &w->link);
  }
  chan_unlock(ch);
  crt_link *l;
  while ((l = crt_list_pop(&woken)))
    crt_chan_wake(crt_container_of(l, crt_waiter, link), 0);
}

size_t crt_chan_len(crt_chan *ch) {
  chan_lock(ch);
  size_t n = ch->count;
  chan_unlock(ch);
  return n;
}

int crt_chan_is_closed(crt_chan *ch) {
  chan_lock(ch);
  int c = ch->closed;
  chan_unlock(ch);
  return c;
}

void crt_chan_get_stats(crt_chan *ch, crt_chan_stats *st) {
  chan_lock(ch);
  st->queued = ch->count;
  st->capacity = ch->cap;
  st->closed = ch->closed;
  st->shared = ch->shared;
  chan_unlock(ch);
  st->sent = atomic_load(&ch->sent);
  st->received = atomic_load(&ch->received);
}

/* ---- parking one operation --------------------------------------------------- */

static void single_unpark(crt_task *t, void *data) {
  crt_waiter *w = data;
  crt_chan *ch = w->ch;
  chan_lock(ch);
  int done = w->done;
  if (!done)
    wq_remove(w);
  chan_unlock(ch);
  if (done) {
    /* Claimed by another thread, whose wake is posted: keep the result. */
    crt_task_defer_unpark(t);
    return;
  }
  if (w->held)
    crt_rt_hold(w->rt, -1);
  waiter_free(w);
}

int crt_chan_recv_done(lua_State *L, crt_chan_waiter *w) {
  if (w->held)
    crt_rt_hold(w->rt, -1);
  /* A local value was pushed on our stack by the sender (the top); a
   * shared one waits in w->val; a close gives nil. */
  int rc = CRT_CHAN_OK;
  if (w->closed) {
    lua_pushnil(L);
    rc = CRT_CHAN_CLOSED;
  } else if (w->val.kind != ITEM_NONE) {
    rc = crt_chan_push_item(L, &w->val);
  }
  waiter_free(w);
  return rc;
}

int crt_chan_send_done(crt_chan_waiter *w) {
  if (w->held)
    crt_rt_hold(w->rt, -1);
  int closed = w->closed;
  waiter_free(w);
  return closed ? CRT_CHAN_CLOSED : CRT_CHAN_OK;
}

/* A thread without a loop waits for its queued waiter to be claimed. An
 * interrupt (cancellation of the job) gives up, unless the operation
 * completed meanwhile: then it completes, and the interrupt stays set for
 * the next wait or instruction check. */
static int block(crt_waiter *w) {
  for (;;) {
    int r = crt_tctx_wait(w->tc, -1);
    chan_lock(w->ch);
    int done = w->done;
    if (!done && r < 0)
      wq_remove(w);
    chan_unlock(w->ch);
    if (done)
      return CRT_CHAN_OK;
    if (r < 0) {
      waiter_free(w);
      return CRT_CHAN_CANCELLED;
    }
  }
}

int crt_chan_wait(lua_State *L, crt_chan_waiter *w, lua_KFunction k) {
  if (w->tc)
    return block(w);
  if (w->ch->shared) {
    w->held = 1; /* another thread may wake us: the loop must stay alive */
    crt_rt_hold(w->rt, 1);
  }
  return crt_task_park(L, w->task, single_unpark, w, k, (lua_KContext)w);
}

/* ---- the cores for select.c (the ones above stay inline here) ------------ */

int crt_chan_send_core(crt_chan *ch, crt_waiter **r) { return send_core(ch, r); }

int crt_chan_send_local(lua_State *L, crt_chan *ch, int st, crt_waiter *r, int vidx) {
  return send_local(L, ch, st, r, vidx);
}

int crt_chan_recv_core(crt_chan *ch, item *it, crt_waiter **s) { return recv_core(ch, it, s); }

int crt_chan_recv_finish(lua_State *L, crt_chan *ch, int st, item *it, crt_waiter *s) {
  return recv_finish(L, ch, st, it, s);
}
