/*
 * fuzz/chan_stub.c - a stand-in for the channel functions the codec calls
 * (chan.h), so that the fuzz target builds from codec.c and buf.c alone,
 * without the event loop.
 *
 * Single-threaded: the fuzz target is the only user. Channels here are
 * userdata with the real metatable name, numbered 1..NSTUB; ids beyond that
 * are "not alive", as in the real registry.
 */
#include <lauxlib.h>
#include <stdint.h>

#include "chan.h"

#define NSTUB 4

struct crt_chan {
  uint64_t id;
  long refs;
};

static crt_chan stubs[NSTUB + 1];

long crt_chan_stub_refs(void) {
  long n = 0;
  for (int i = 1; i <= NSTUB; i++)
    n += stubs[i].refs;
  return n;
}

void crt_chan_retain(crt_chan *ch) { ch->refs++; }
void crt_chan_release(crt_chan *ch) { ch->refs--; }

crt_chan *crt_chan_test(lua_State *L, int idx) {
  crt_chan **p = luaL_testudata(L, idx, CRT_CHAN_MT);
  return p ? *p : NULL;
}

int crt_chan_share(lua_State *L, crt_chan *ch, uint64_t *id) {
  (void)L;
  *id = ch->id;
  return 0;
}

int crt_chan_push_id(lua_State *L, uint64_t id) {
  if (id < 1 || id > NSTUB)
    return -1;
  crt_chan **p = lua_newuserdatauv(L, sizeof *p, 0);
  stubs[id].id = id;
  *p = &stubs[id];
  luaL_setmetatable(L, CRT_CHAN_MT);
  return 0;
}

/* Push a stub channel proxy (tests): id in 1..NSTUB. */
int crt_chan_stub_push(lua_State *L, uint64_t id) {
  luaL_newmetatable(L, CRT_CHAN_MT);
  lua_pop(L, 1);
  return crt_chan_push_id(L, id);
}
