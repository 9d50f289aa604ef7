/*
 * worker.c - the crt table of a worker state (a pool worker or a dedicated
 * thread): crt.channel, crt.select, crt.sleep (blocks the thread), crt.now,
 * crt.codec, crt.parent (dedicated threads), crt.thread.id and crt.Cancelled.
 *
 * Runs on the worker thread that owns the state; nothing here touches
 * another state. Blocking calls wait on the thread's crt_tctx, so a cancel
 * (crt_tctx_interrupt from the loop thread) makes them raise crt.Cancelled.
 */
#include <lauxlib.h>
#include <uv.h>

#include "chan.h"
#include "channel.h"
#include "codec.h"
#include "lib.h"
#include "pool.h"
#include "rt.h"
#include "scheduler.h"
#include "thread.h"
#include "util.h"

static int w_sleep(lua_State *L) {
  if (lua_type(L, 1) != LUA_TNUMBER)
    return crt_typeerror(L, "crt.sleep", 1, "number");
  double s = lua_tonumber(L, 1);
  if (s != s)
    return crt_argerror(L, "crt.sleep", 1, "number expected, got nan");
  if (crt_pool_sleep(s) < 0) {
    crt_sched_push_cancelled(L);
    return lua_error(L);
  }
  return 0;
}

static int w_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

static int w_id(lua_State *L) {
  lua_pushinteger(L, crt_pool_thread_id());
  return 1;
}

static int w_yield(lua_State *L) {
  (void)L;
  return 0;
}

/* Registered as CRT_POOL_CANCEL_KEY: the pool's cancel hook calls it to
 * interrupt the running job with crt.Cancelled. */
static int raise_cancelled(lua_State *L) {
  crt_sched_push_cancelled(L);
  return lua_error(L);
}

/* crt.parent: the mailbox of a dedicated thread (set per job by the engine
 * as crt._mailbox = {inbox = ch, outbox = ch}). */
static int mailbox(lua_State *L, const char *fname, const char *which) {
  lua_getglobal(L, "crt");
  if (!lua_istable(L, -1) || lua_getfield(L, -1, "_mailbox") != LUA_TTABLE)
    return crt_errorf(L, fname, "no parent: only a dedicated thread (crt.thread.spawn) has one");
  lua_getfield(L, -1, which);
  return lua_gettop(L);
}

static int p_send(lua_State *L) {
  if (lua_gettop(L) < 2)
    return crt_argerror(L, "crt.parent:send", 2, "value expected");
  int ch = mailbox(L, "crt.parent:send", "outbox");
  lua_getfield(L, ch, "send");
  lua_pushvalue(L, ch);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  return 0;
}

static int p_recv(lua_State *L) {
  int ch = mailbox(L, "crt.parent:recv", "inbox");
  lua_getfield(L, ch, "recv");
  lua_pushvalue(L, ch);
  lua_call(L, 1, 1);
  return 1;
}

int crt_open_worker(lua_State *L, int id) {
  (void)id;
  lua_createtable(L, 0, 12);
  crt_open_channel(L);
  crt_open_codec(L);
  lua_setfield(L, -2, "codec");

  /* crt.Cancelled: this state's own unique value. */
  crt_new_cancelled(L);
  lua_pushvalue(L, -1);
  crt_sched_set_cancelled(L);
  lua_setfield(L, -2, "Cancelled");
  /* What the pool's cancel hook calls to interrupt a running job. */
  lua_pushcfunction(L, raise_cancelled);
  lua_setfield(L, LUA_REGISTRYINDEX, CRT_POOL_CANCEL_KEY);

  static const luaL_Reg funcs[] = {
      {"sleep", w_sleep}, {"now", w_now}, {"yield", w_yield}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);

  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, w_id);
  lua_setfield(L, -2, "id");
  lua_setfield(L, -2, "thread");

  /* crt.parent: one object; its methods find the current mailbox. */
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, p_send);
  lua_setfield(L, -2, "send");
  lua_pushcfunction(L, p_recv);
  lua_setfield(L, -2, "recv");
  lua_setfield(L, -2, "parent");

  lua_pushliteral(L, CRT_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, crt_l_pid);
  lua_setfield(L, -2, "pid");

  /* The global crt, and require "crt" returns the same table. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "crt");
  lua_pop(L, 1);
  /* The codec sends the crt table by reference: it decodes as this one. */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "crt.lib");
  lua_setglobal(L, "crt");
  return 0;
}
