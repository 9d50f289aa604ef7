/*
 * chan.h - channels: C objects with a reference count, a mutex and queues of
 * parked waiters, shared by every Lua state of the process.
 *
 * A channel starts "local": only the state that created it can reach it, and
 * queued values are references in that state. The first time the codec sends
 * the channel to another state it becomes "shared": queued values are then
 * encoded buffers and every operation takes the lock. Tasks that must wait are
 * parked by the scheduler (never blocking the loop thread).
 */
#ifndef CRT_CHAN_H
#define CRT_CHAN_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

typedef struct crt_chan crt_chan;

#define CRT_CHAN_UNBOUNDED ((size_t)-1)

/* Metatable name of the Lua proxy userdata. */
#define CRT_CHAN_MT "crt.channel"

void crt_chan_retain(crt_chan *ch);
void crt_chan_release(crt_chan *ch);

/* The channel behind the proxy at idx, or NULL when it is not a channel. */
crt_chan *crt_chan_test(lua_State *L, int idx);

/* For the codec (runs on the thread that owns L): make the channel shared
 * (moving its queued local values into encoded form the first time) and give
 * its process-wide id. Returns 0, or -1 with an error message pushed. */
int crt_chan_share(lua_State *L, crt_chan *ch, uint64_t *id);

/* For the codec: push a proxy for the live channel with this id. Returns 0, or
 * -1 (nothing pushed) when no such channel is alive. */
int crt_chan_push_id(lua_State *L, uint64_t id);

/* Send v (at stack top, popped) without waiting, from C (task completion
 * notifications). Returns 1 if queued or handed over, 0 if full or closed. */
int crt_chan_offer(lua_State *L, crt_chan *ch);

/* Free the waiter structs the calling thread keeps for reuse. */
void crt_chan_thread_cleanup(void);

/* The Lua binding: crt.channel and crt.select. */
int crt_open_channel(lua_State *L);

#endif
