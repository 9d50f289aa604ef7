/*
 * channel.c - the Lua face of channels (runtime/chan.c) and select
 * (runtime/select.c): crt.channel(cap), the channel class (send, recv,
 * try_send, try_recv, close, iter, closed, stats, #, tostring, gc) and
 * crt.select. Every argument check and every Lua error of channels is here;
 * the engine returns status codes.
 *
 * Threads: each function runs on the thread that owns its Lua state (a loop
 * thread, or a worker thread without a loop that blocks on its tctx).
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "channel.h"
#include "chan.h"
#include "scheduler.h"
#include "select.h"
#include "util.h"

static const char *const fname_send = "channel:send";
static const char *const outside_task =
    "must be called from a task to wait (in module mode wrap the code in crt.run)";

/* Every method has the channel metatable as upvalue 1: comparing it is much
 * cheaper than luaL_testudata's registry lookup by name, on the hot path. */
static crt_chan *check_chan(lua_State *L, const char *fname) {
  crt_chan **p = lua_touserdata(L, 1);
  if (p && lua_getmetatable(L, 1)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok)
      return *p;
  }
  return crt_checkptr(L, 1, CRT_CHAN_MT, "channel", fname);
}

/* Raise the error of a failed operation (rc < 0, or CRT_CHAN_CLOSED). */
static int chan_error(lua_State *L, int rc, const char *fname) {
  switch (rc) {
  case CRT_CHAN_CLOSED: return crt_errorf(L, fname, "channel is closed");
  case CRT_CHAN_ERR: return lua_error(L); /* the message the engine pushed */
  case CRT_CHAN_CANCELLED: crt_sched_push_cancelled(L); return lua_error(L);
  default: return crt_errorf(L, fname, "not enough memory");
  }
}

/* Park the calling task, or block the calling thread, on queued waiter w
 * whose continuation is k. */
static int wait_for(lua_State *L, crt_chan_waiter *w, lua_KFunction k, const char *fname) {
  int rc = crt_chan_wait(L, w, k); /* a task: does not return */
  if (rc != CRT_CHAN_OK)
    return chan_error(L, rc, fname);
  return k(L, LUA_OK, (lua_KContext)w);
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (crt_chan_send_done((crt_chan_waiter *)ctx) == CRT_CHAN_CLOSED)
    return crt_errorf(L, fname_send, "channel is closed");
  lua_pushboolean(L, 1);
  return 1;
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (crt_chan_recv_done(L, (crt_chan_waiter *)ctx) < 0)
    return lua_error(L);
  return 1; /* the value, or nil once closed */
}

static int chan_send(lua_State *L) {
  crt_chan *ch = check_chan(L, fname_send);
  if (lua_type(L, 2) <= LUA_TNIL)
    return crt_argerror(L, fname_send, 2, "value expected, got nil");
  crt_chan_waiter *w;
  int rc = crt_chan_send(L, ch, 2, "channel:send: cannot send", &w);
  if (rc == CRT_CHAN_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == CRT_CHAN_WAIT)
    return wait_for(L, w, send_k, fname_send);
  if (rc == CRT_CHAN_FULL)
    return crt_errorf(L, fname_send, "channel is full: %s", outside_task);
  return chan_error(L, rc, fname_send);
}

static int chan_recv(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:recv");
  crt_chan_waiter *w;
  int rc = crt_chan_recv(L, ch, &w);
  if (rc == CRT_CHAN_OK || rc == CRT_CHAN_CLOSED)
    return 1; /* the value, or nil once closed and drained */
  if (rc == CRT_CHAN_WAIT)
    return wait_for(L, w, recv_k, "channel:recv");
  if (rc == CRT_CHAN_EMPTY)
    return crt_errorf(L, "channel:recv", "channel is empty: %s", outside_task);
  return chan_error(L, rc, "channel:recv");
}

static int chan_try_send(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:try_send");
  if (lua_type(L, 2) <= LUA_TNIL)
    return crt_argerror(L, "channel:try_send", 2, "value expected, got nil");
  int rc = crt_chan_send(L, ch, 2, "channel:try_send: cannot send", NULL);
  if (rc != CRT_CHAN_OK && rc != CRT_CHAN_FULL)
    return chan_error(L, rc, "channel:try_send");
  lua_pushboolean(L, rc == CRT_CHAN_OK);
  return 1;
}

static int chan_try_recv(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:try_recv");
  int rc = crt_chan_recv(L, ch, NULL);
  if (rc == CRT_CHAN_EMPTY)
    lua_pushnil(L);
  else if (rc < 0)
    return chan_error(L, rc, "channel:try_recv");
  return 1;
}

static int chan_close(lua_State *L) {
  crt_chan_close(check_chan(L, "channel:close"));
  return 0;
}

static int chan_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)crt_chan_len(check_chan(L, "channel:__len")));
  return 1;
}

static int chan_iter(lua_State *L) {
  check_chan(L, "channel:iter");
  lua_getfield(L, 1, "recv"); /* the method, with its upvalue */
  lua_pushvalue(L, 1);
  return 2;
}

static int chan_is_closed(lua_State *L) {
  lua_pushboolean(L, crt_chan_is_closed(check_chan(L, "channel:closed")));
  return 1;
}

static int chan_stats(lua_State *L) {
  crt_chan_stats st;
  crt_chan_get_stats(check_chan(L, "channel:stats"), &st);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, st.capacity == CRT_CHAN_UNBOUNDED ? -1 : (lua_Integer)st.capacity);
  lua_setfield(L, -2, "capacity");
  lua_pushboolean(L, st.closed);
  lua_setfield(L, -2, "closed");
  lua_pushboolean(L, st.shared);
  lua_setfield(L, -2, "shared");
  lua_pushinteger(L, (lua_Integer)st.sent);
  lua_setfield(L, -2, "sent");
  lua_pushinteger(L, (lua_Integer)st.received);
  lua_setfield(L, -2, "received");
  return 1;
}

static int chan_tostring(lua_State *L) {
  crt_chan *ch = check_chan(L, "channel:__tostring");
  lua_pushfstring(L, "crt.channel: %p", (void *)ch);
  return 1;
}

static int chan_gc(lua_State *L) {
  crt_chan **p = luaL_testudata(L, 1, CRT_CHAN_MT);
  if (p && *p) {
    crt_chan_release(*p);
    *p = NULL;
  }
  return 0;
}

/* ---- crt.select ------------------------------------------------------------ */

static const char *const fname_select = "crt.select";

/* Turn a select's status into its results: index, value; nil, "timeout";
 * or an error. */
static int select_result(lua_State *L, int rc, int idx) {
  switch (rc) {
  case CRT_CHAN_OK:
    lua_pushinteger(L, idx);
    lua_insert(L, -2);
    return 2;
  case CRT_CHAN_TIMEOUT:
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  case CRT_CHAN_CLOSED: return crt_errorf(L, fname_select, "channel of case #%d is closed", idx);
  case CRT_CHAN_EMPTY: return crt_errorf(L, fname_select, "%s", outside_task);
  default: return chan_error(L, rc, fname_select);
  }
}

static int select_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int idx = 0;
  int rc = crt_select_finish(L, (crt_select *)ctx, &idx);
  return select_result(L, rc, idx);
}

/* Check the cases table at 1; leave on the stack, per case i, the channel
 * proxy at 2i and the value to send (nil for a receive) at 2i+1. Returns the
 * number of cases. */
static int select_args(lua_State *L, double *timeout) {
  if (!lua_istable(L, 1))
    return crt_typeerror(L, fname_select, 1, "table");
  lua_settop(L, 1);
  *timeout = -1;
  if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) != lua_tonumber(L, -1))
      return crt_errorf(L, fname_select, "bad argument #1 (timeout must be a number)");
    *timeout = lua_tonumber(L, -1);
    if (*timeout < 0)
      *timeout = 0;
  }
  lua_pop(L, 1);
  int n = (int)lua_rawlen(L, 1);
  if (n == 0 && *timeout < 0)
    return crt_errorf(L, fname_select, "bad argument #1 (no cases and no timeout)");
  luaL_checkstack(L, 2 * n + 4, "too many select cases");
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 1, i) != LUA_TTABLE)
      return crt_errorf(L, fname_select, "bad case #%d (table expected, got %s)", i,
                        luaL_typename(L, -1));
    lua_rawgeti(L, -1, 1);
    if (!crt_chan_test(L, -1))
      return crt_errorf(L, fname_select, "bad case #%d (channel expected, got %s)", i,
                        luaL_typename(L, -1));
    lua_rawgeti(L, -2, 2);
    const char *op = lua_tostring(L, -1);
    int send = op && strcmp(op, "send") == 0;
    if (!send && !(op && strcmp(op, "recv") == 0))
      return crt_errorf(L, fname_select, "bad case #%d (\"recv\" or \"send\" expected)", i);
    lua_pop(L, 1);
    if (send) {
      lua_rawgeti(L, -2, 3);
      if (lua_isnil(L, -1))
        return crt_errorf(L, fname_select, "bad case #%d (value to send expected, got nil)", i);
    } else {
      lua_pushnil(L);
    }
    lua_remove(L, -3);
  }
  return n;
}

static int chan_select(lua_State *L) {
  double timeout;
  int n = select_args(L, &timeout);
  crt_select_case few[8];
  crt_select_case *cases = n <= 8 ? few : malloc((size_t)n * sizeof *cases);
  if (!cases)
    return crt_errorf(L, fname_select, "not enough memory");
  for (int i = 1; i <= n; i++) {
    cases[i - 1].ch = crt_chan_test(L, 2 * i);
    cases[i - 1].op = lua_isnil(L, 2 * i + 1) ? CRT_CHAN_OP_RECV : CRT_CHAN_OP_SEND;
    cases[i - 1].vidx = 2 * i + 1;
  }
  crt_select *sel = NULL;
  int idx = 0;
  int rc = crt_select_start(L, cases, n, timeout, "crt.select: cannot send", &sel, &idx);
  if (cases != few)
    free(cases);
  if (rc == CRT_CHAN_WAIT) {
    rc = crt_select_wait(L, sel, timeout, select_k); /* a task: does not return */
    if (rc == CRT_CHAN_OK)
      return select_k(L, LUA_OK, (lua_KContext)sel);
  }
  return select_result(L, rc, idx);
}

/* ---- crt.channel ------------------------------------------------------------ */

static int chan_new(lua_State *L) {
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
  if (!crt_chan_push_new(L, cap))
    return crt_errorf(L, "crt.channel", "not enough memory");
  return 1;
}

/* Set upvalue 1 of every C function in the table at the top to v (the
 * value just above it; popped). */
static void set_upvalues(lua_State *L) {
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    if (lua_iscfunction(L, -1)) {
      lua_pushvalue(L, -3);
      lua_setupvalue(L, -2, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

int crt_open_channel(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", chan_send},         {"recv", chan_recv},   {"try_send", chan_try_send},
      {"try_recv", chan_try_recv}, {"close", chan_close}, {"iter", chan_iter},
      {"closed", chan_is_closed},  {"stats", chan_stats}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {
      {"__len", chan_len}, {"__gc", chan_gc}, {"__tostring", chan_tostring}, {NULL, NULL}};
  /* Upvalue 1 of every method is the metatable itself (check_chan), which
   * exists only once the class is made: a placeholder, then the real one. */
  lua_pushboolean(L, 0);
  if (crt_newclass(L, CRT_CHAN_MT, methods, metamethods, 1)) {
    luaL_getmetatable(L, CRT_CHAN_MT);
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, -2);
    set_upvalues(L); /* the methods */
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    set_upvalues(L); /* the metamethods */
    lua_pop(L, 1);
  }
  crt_chan_state_init(L);
  /* crt.channel and crt.select go into the table at the top. */
  lua_pushcfunction(L, chan_new);
  lua_setfield(L, -2, "channel");
  lua_pushcfunction(L, chan_select);
  lua_setfield(L, -2, "select");
  return 0;
}
