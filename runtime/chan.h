/*
 * chan.h - channels: C objects with a reference count, a mutex and queues of
 * parked waiters, shared by every Lua state of the process.
 *
 * A channel starts "local": only the state that created it can reach it, and
 * queued values are references in that state. The first time the codec sends
 * the channel to another state it becomes "shared": queued values are then
 * encoded buffers and every operation takes the lock. Tasks that must wait are
 * parked by the scheduler (never blocking the loop thread); a thread without
 * a loop (a pool worker) blocks on its tctx.
 *
 * The operations never raise a Lua error: they return a status code (below)
 * that the binding (bindings/channel.c) turns into results or errors. They
 * run on the thread that owns L; a shared channel may be used by several.
 */
#ifndef CRT_CHAN_H
#define CRT_CHAN_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

typedef struct crt_chan crt_chan;
/* One queued (parked) send or receive of the calling task or thread. */
typedef struct crt_waiter crt_chan_waiter;

#define CRT_CHAN_UNBOUNDED ((size_t)-1)

/* Metatable name of the Lua proxy userdata: a box holding the crt_chan *
 * (the binding registers the class; crt_checkptr reads it). */
#define CRT_CHAN_MT "crt.channel"

/* Status codes of the operations. */
enum {
  CRT_CHAN_OK = 0,
  CRT_CHAN_CLOSED = 1,    /* the channel is closed (recv: and drained) */
  CRT_CHAN_FULL = 2,      /* a send would wait, and the caller may not */
  CRT_CHAN_EMPTY = 3,     /* a receive (or select) would wait, and the caller may not */
  CRT_CHAN_WAIT = 4,      /* a waiter was queued: wait for it (crt_chan_wait) */
  CRT_CHAN_TIMEOUT = 5,   /* select: no case completed in time */
  CRT_CHAN_ERR = -1,      /* the error message is pushed on L (codec) */
  CRT_CHAN_ENOMEM = -2,   /* out of memory (nothing pushed) */
  CRT_CHAN_CANCELLED = -3 /* a blocked thread was interrupted (nothing pushed) */
};

/* Operations of select cases (and of waiters). */
enum { CRT_CHAN_OP_RECV, CRT_CHAN_OP_SEND };

/* A new channel of capacity cap (0: rendezvous; CRT_CHAN_UNBOUNDED), with
 * one reference; NULL when out of memory. */
crt_chan *crt_chan_new(size_t cap);
/* A new channel and its proxy pushed on L (crt.channel): the proxy owns the
 * channel. Returns NULL (nothing pushed) when memory for the channel cannot
 * be had; a Lua memory error while pushing leaks nothing. */
crt_chan *crt_chan_push_new(lua_State *L, size_t cap);
void crt_chan_retain(crt_chan *ch);
void crt_chan_release(crt_chan *ch);

/* Make L ready for channels (the store of queued local values and the cache
 * of proxies): once per state, before any proxy is pushed. */
void crt_chan_state_init(lua_State *L);
/* Push the one proxy L has for ch (made on first use; it retains ch). */
void crt_chan_push_proxy(lua_State *L, crt_chan *ch);

/* The channel behind the proxy at idx, or NULL when it is not a channel. */
crt_chan *crt_chan_test(lua_State *L, int idx);

/* For the codec (runs on the thread that owns L): make the channel shared
 * (moving its queued local values into encoded form the first time) and give
 * its process-wide id. Returns 0, or -1 with an error message pushed. */
int crt_chan_share(lua_State *L, crt_chan *ch, uint64_t *id);

/* For the codec: push a proxy for the live channel with this id. Returns 0, or
 * -1 (nothing pushed) when no such channel is alive. */
int crt_chan_push_id(lua_State *L, uint64_t id);

/*
 * Send the value at stack index vidx of L (left there). `what` prefixes the
 * codec's message when the value cannot be copied ("channel:send: cannot
 * send"). With wait == NULL never waits (try_send). Returns
 *   CRT_CHAN_OK      handed to a receiver or queued;
 *   CRT_CHAN_CLOSED  the channel is closed;
 *   CRT_CHAN_FULL    it would wait and cannot (wait == NULL, or neither a
 *                    task nor a thread context calls);
 *   CRT_CHAN_WAIT    *wait is queued: return crt_chan_wait(L, *wait, k), and
 *                    k calls crt_chan_send_done (the value at vidx must stay
 *                    on the stack meanwhile);
 *   CRT_CHAN_ERR, CRT_CHAN_ENOMEM.
 */
int crt_chan_send(lua_State *L, crt_chan *ch, int vidx, const char *what, crt_chan_waiter **wait);
/* The outcome of a send that waited (frees w): CRT_CHAN_OK or
 * CRT_CHAN_CLOSED. */
int crt_chan_send_done(crt_chan_waiter *w);

/*
 * Receive. Returns
 *   CRT_CHAN_OK      the value is pushed;
 *   CRT_CHAN_CLOSED  closed and drained: nil is pushed;
 *   CRT_CHAN_EMPTY   nothing pushed; it would wait and cannot (as for send);
 *   CRT_CHAN_WAIT    *wait is queued: return crt_chan_wait(L, *wait, k), and
 *                    k calls crt_chan_recv_done;
 *   CRT_CHAN_ERR, CRT_CHAN_ENOMEM.
 */
int crt_chan_recv(lua_State *L, crt_chan *ch, crt_chan_waiter **wait);
/* The outcome of a receive that waited (frees w): CRT_CHAN_OK (value pushed),
 * CRT_CHAN_CLOSED (nil pushed) or CRT_CHAN_ERR (message pushed). */
int crt_chan_recv_done(lua_State *L, crt_chan_waiter *w);

/* Wait for a queued waiter. A task is parked with continuation k (called as
 * k(L, LUA_OK, (lua_KContext)w) when the operation completed): this does not
 * return. A thread blocks, then returns CRT_CHAN_OK (call k yourself) or
 * CRT_CHAN_CANCELLED when interrupted (w was freed: raise crt.Cancelled). */
int crt_chan_wait(lua_State *L, crt_chan_waiter *w, lua_KFunction k);

/* Close: parked receivers get nil, parked senders CRT_CHAN_CLOSED. Closing
 * twice does nothing. */
void crt_chan_close(crt_chan *ch);
size_t crt_chan_len(crt_chan *ch);
int crt_chan_is_closed(crt_chan *ch);

typedef struct crt_chan_stats {
  size_t queued;
  size_t capacity; /* CRT_CHAN_UNBOUNDED when unbounded */
  int closed, shared;
  uint64_t sent, received;
} crt_chan_stats;
void crt_chan_get_stats(crt_chan *ch, crt_chan_stats *st);

/* Send v (at stack top, popped) without waiting, from C (task completion
 * notifications). Returns 1 if queued or handed over, 0 if full, closed or
 * not sendable. */
int crt_chan_offer(lua_State *L, crt_chan *ch);

/* Free the waiter structs the calling thread keeps for reuse. */
void crt_chan_thread_cleanup(void);

#endif
