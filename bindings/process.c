/*
 * process.c - the Lua face of child crt processes: crt.process.spawn, the
 * child class (send, recv, await, kill, close, pid, and _sendv/_alive for
 * the pool), crt.process.pool (its logic is bindings/process.lua, loaded on
 * first use), and send/recv on an endpoint, shared with crt.parent
 * (bindings/process_child.c).
 *
 * Loop thread only. The engine (runtime/proc.c, runtime/proc_msg.c) starts,
 * reaps and ends the children and queues their messages; this file checks
 * arguments, encodes and decodes values (codec.h), parks tasks on the
 * engine's waiters and words the errors. See docs/processes.md.
 *
 * A child object is a userdata box holding a crt_proc *; a task waiting on
 * a child keeps its crt_proc_waiter as a userdata on its own coroutine
 * stack (alive while the task is parked), unlinked by the engine's unpark
 * hook.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "codec.h"
#include "io.h"
#include "process.h"
#include "util.h"

#define CHILD_MT "crt.process.child"
#define CODEC_FLAGS CRT_PROCESS_CODEC_FLAGS
#define SPAWN "crt.process.spawn"

const char *crt_lua_source(const char *name, size_t *len); /* generated */

/* ---- sending and receiving (both sides) ------------------------------------ */

static const char *send_name(const crt_proc_ep *ep) {
  return ep->proc ? "child:send" : "crt.parent:send";
}

static const char *recv_name(const crt_proc_ep *ep) {
  return ep->proc ? "child:recv" : "crt.parent:recv";
}

/* Park the running task on ep (list `kind`); returns through k. */
static int park(lua_State *L, crt_task *t, crt_proc_ep *ep, int kind, lua_KFunction k) {
  crt_proc_waiter *w = lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  crt_proc_wait(ep, kind, w, t);
  return crt_task_park(L, t, crt_proc_unpark, w, k, (lua_KContext)w);
}

/* Decode message m onto L (freeing it first if decoding fails, then
 * raising). */
static int push_msg(lua_State *L, crt_ipc_msg *m, const char *fname) {
  int n = crt_codec_decode(L, m->data, m->len, CODEC_FLAGS);
  crt_ipc_msg_free(m);
  if (n < 0)
    return crt_errorf(L, fname, "%s", lua_tostring(L, -1));
  return n;
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  crt_proc_waiter *w = (crt_proc_waiter *)ctx;
  (void)status;
  crt_ipc_msg *m = w->msg;
  w->msg = NULL;
  if (!m) {
    lua_pushnil(L);
    return 1;
  }
  return push_msg(L, m, recv_name(w->ep));
}

int crt_process_recv(lua_State *L, crt_proc_ep *ep) {
  crt_ipc_msg *m = crt_proc_ep_take(ep);
  if (m)
    return push_msg(L, m, recv_name(ep));
  if (crt_proc_ep_at_end(ep)) {
    lua_pushnil(L);
    return 1;
  }
  crt_task *t = crt_task_require(L, recv_name(ep));
  return park(L, t, ep, CRT_PROC_RECV, recv_k);
}

/* Outside-world failure of a send: nil, message, code. */
static int send_fail(lua_State *L, crt_proc_ep *ep, int err) {
  lua_pushnil(L);
  if (ep->proc)
    lua_pushfstring(L, "%s: child process %d is gone", send_name(ep), ep->proc->pid);
  else
    lua_pushfstring(L, "%s: the parent process is gone", send_name(ep));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  crt_proc_waiter *w = (crt_proc_waiter *)ctx;
  (void)status;
  if (w->ep->ipc.werr)
    return send_fail(L, w->ep, w->ep->ipc.werr);
  lua_pushboolean(L, 1);
  return 1;
}

void crt_process_gsub_top(lua_State *L, const char *old, const char *repl) {
  luaL_gsub(L, lua_tostring(L, -1), old, repl);
  lua_remove(L, -2);
}

/* Send the n values at first.. as one message. what/argbase name the
 * values in an encoding error (codec.h); results = 1 names them "result
 * #k". Raises on an unsendable value; returns true, or nil, message, code
 * when the other side is gone; waits (in a task) while the pipe is full. */
static int ep_send(lua_State *L, crt_proc_ep *ep, int first, int n, const char *what, int argbase,
                   int results) {
  const char *fname = send_name(ep);
  int e = crt_proc_ep_can_send(ep);
  if (e == CRT_PROC_ECLOSED)
    return crt_errorf(L, fname, "the link was closed with close()");
  if (e)
    return send_fail(L, ep, e);
  crt_buf *b = crt_ipc_begin(&ep->ipc);
  if (!b)
    return crt_errorf(L, fname, "not enough memory");
  if (crt_codec_encode(L, first, n, b, CRT_CODEC_NOCHANS, what, argbase) != 0) {
    crt_ipc_abort(&ep->ipc);
    if (results) {
      crt_process_gsub_top(L, "result argument #", "result #");
      crt_process_gsub_top(L, "result value", "result #1");
    }
    return lua_error(L);
  }
  size_t len = b->len - ep->ipc.frame_start - CRT_IPC_HDR;
  e = crt_ipc_end(&ep->ipc, CRT_IPC_MSG);
  if (e == UV_E2BIG)
    return crt_errorf(L, fname, "message too large (%f MiB encoded; the limit is %d MiB)",
                      (double)len / (1 << 20), (int)(CRT_IPC_MAXMSG >> 20));
  if (e == UV_ENOMEM)
    return crt_errorf(L, fname, "not enough memory");
  if (e)
    return send_fail(L, ep, e);
  if (crt_proc_ep_full(ep)) {
    crt_task *t = crt_task_current(L);
    if (t)
      return park(L, t, ep, CRT_PROC_SEND, send_k);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int crt_process_send(lua_State *L, crt_proc_ep *ep) {
  if (lua_gettop(L) < 2 || lua_isnil(L, 2))
    return crt_errorf(L, send_name(ep), "bad argument #1 (value expected, got %s)",
                      lua_gettop(L) < 2 ? "no value" : "nil");
  lua_settop(L, 2);
  char what[48];
  snprintf(what, sizeof what, "%s: cannot send", send_name(ep));
  return ep_send(L, ep, 2, 1, what, 0, 0);
}

int crt_process_sendv(lua_State *L, crt_proc_ep *ep) {
  const char *what = luaL_checkstring(L, 2);
  int argbase = (int)luaL_checkinteger(L, 3);
  int results = lua_toboolean(L, 4);
  return ep_send(L, ep, 5, lua_gettop(L) - 4, what, argbase, results);
}

/* ---- the outcome of a child --------------------------------------------------- */

/* Signal names and numbers are shared with crt.signal and crt.process.command
 * (bindings/io.c). */
static const char *signame(int sig) {
  const char *name = crt_io_signame(sig);
  return name ? name : "unknown signal";
}

/* Push why a child that sent no results ended. */
static void push_death(lua_State *L, const crt_proc *p) {
  if (p->proto)
    lua_pushfstring(L, "child process %d sent a malformed message (%s) and was killed", p->pid,
                    p->why);
  else if (p->term_signal)
    lua_pushfstring(L, "child process %d was killed by signal %s (%d)", p->pid,
                    signame(p->term_signal), p->term_signal);
  else if (p->exit_status == -1)
    lua_pushfstring(L,
                    "child process %d exited without returning results (its exit status was "
                    "taken by another waitpid)",
                    p->pid);
  else
    lua_pushfstring(L, "child process %d exited with code %d without returning results", p->pid,
                    (int)p->exit_status);
}

/* A failure nobody awaited (the box was collected, or shutdown came): print
 * it like an unawaited task error, so that it is never lost. L is the
 * running thread (the main state from the loop, whichever thread runs a
 * finalizer). The engine calls this as the child's report hook. */
static void proc_report(lua_State *L, crt_proc *p) {
  if (p->reported || p->observed || p->killed || !p->done || !crt_proc_failed(p))
    return;
  p->reported = 1;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8))
    return;
  lua_pushliteral(L, "crt: error in a child process that nobody awaited:\n");
  if (p->result) {
    int n = crt_codec_decode(L, p->result->data, p->result->len, CODEC_FLAGS);
    if (n >= 1 && lua_type(L, top + 2) == LUA_TSTRING) {
      lua_settop(L, top + 2);
    } else {
      lua_settop(L, top + 1);
      lua_pushfstring(L, "child process %d failed with a non-string error", p->pid);
    }
  } else {
    push_death(L, p);
  }
  lua_concat(L, 2);
  crt_rt_report(p->ep.rt, lua_tostring(L, -1));
  lua_settop(L, top);
}

static int push_outcome(lua_State *L, crt_proc *p) {
  p->observed = 1;
  crt_ipc_msg *r = p->result;
  if (r) {
    int top = lua_gettop(L);
    int n = crt_codec_decode(L, r->data, r->len, CODEC_FLAGS);
    if (n < 0)
      return crt_errorf(L, "child:await", "cannot decode the results of child process %d: %s",
                        p->pid, lua_tostring(L, -1));
    if (r->kind == CRT_IPC_FAIL) {
      lua_settop(L, top + 1);
      return lua_error(L);
    }
    return n;
  }
  push_death(L, p);
  return lua_error(L);
}

/* ---- the child class ------------------------------------------------------------ */

static crt_proc *check_child(lua_State *L, const char *fname) {
  crt_proc *p = crt_checkptr(L, 1, CHILD_MT, "child", fname);
  if (!p)
    crt_errorf(L, fname, "the child object was finalized");
  return p;
}

static int c_send(lua_State *L) { return crt_process_send(L, &check_child(L, "child:send")->ep); }
static int c_sendv(lua_State *L) {
  return crt_process_sendv(L, &check_child(L, "child:_sendv")->ep);
}
static int c_recv(lua_State *L) { return crt_process_recv(L, &check_child(L, "child:recv")->ep); }

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  crt_proc_waiter *w = (crt_proc_waiter *)ctx;
  (void)status;
  return push_outcome(L, w->ep->proc);
}

static int c_await(lua_State *L) {
  crt_proc *p = check_child(L, "child:await");
  if (p->done)
    return push_outcome(L, p);
  crt_task *t = crt_task_require(L, "child:await");
  crt_proc_await_prepare(p);
  return park(L, t, &p->ep, CRT_PROC_AWAIT, await_k);
}

static int c_kill(lua_State *L) {
  crt_proc *p = check_child(L, "child:kill");
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : crt_io_checksignal(L, 2, "child:kill");
  int e = crt_proc_signal(p, sig);
  if (e == CRT_PROC_EEXITED) {
    lua_pushnil(L);
    lua_pushfstring(L, "child:kill: child process %d has exited", p->pid);
    lua_pushliteral(L, "ESRCH");
    return 3;
  }
  if (e)
    return crt_pushfail(L, e, "child:kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* close(): no more messages to the child; its crt.parent:recv() returns nil
 * once it has received the ones already sent. */
static int c_close(lua_State *L) {
  crt_proc_ep_close(&check_child(L, "child:close")->ep);
  lua_pushboolean(L, 1);
  return 1;
}

static int c_alive(lua_State *L) {
  lua_pushboolean(L, crt_proc_alive(check_child(L, "child:_alive")));
  return 1;
}

static int c_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    crt_proc **box = lua_touserdata(L, 1);
    lua_pushinteger(L, *box ? (*box)->pid : 0);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int c_tostring(lua_State *L) {
  crt_proc **box = luaL_checkudata(L, 1, CHILD_MT);
  crt_proc *p = *box;
  const char *st = !p ? "finalized" : !p->done ? "running" : crt_proc_failed(p) ? "failed" : "done";
  lua_pushfstring(L, "crt.process.child: %d (%s)", p ? p->pid : 0, st);
  return 1;
}

static int c_gc(lua_State *L) {
  crt_proc **box = luaL_checkudata(L, 1, CHILD_MT);
  crt_proc *p = *box;
  if (!p)
    return 0;
  *box = NULL;
  crt_proc_forget(p);
  if (p->done)
    proc_report(L, p);
  crt_proc_unref(p);
  return 0;
}

/* ---- crt.process.spawn ------------------------------------------------------------ */

static int l_spawn(lua_State *L) {
  crt_runtime *rt = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return crt_typeerror(L, SPAWN, 1, "function");
  if (crt_rt_is_closing(rt))
    return crt_errorf(L, SPAWN, "the runtime is closing");
  int nvals = lua_gettop(L);
  char exebuf[PATH_MAX];
  const char *exe = crt_proc_find_exe(rt, exebuf, sizeof exebuf);
  if (!exe) {
    lua_pushnil(L);
    lua_pushliteral(L, SPAWN ": no crt executable to start (set crt_config.exe_path, or CRT_EXE)");
    lua_pushliteral(L, "ENOENT");
    return 3;
  }
  crt_proc_mgr *m = crt_proc_mgr_get(L, rt);
  if (!m)
    return crt_errorf(L, SPAWN, "not enough memory");

  /* The box first: from here on the GC frees p if anything raises. */
  crt_proc **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, CHILD_MT);
  crt_proc *p = crt_proc_new(m, (void **)box, proc_report);
  if (!p)
    return crt_errorf(L, SPAWN, "not enough memory");
  *box = p;

  /* Encode before starting anything: an unsendable argument starts nothing. */
  crt_buf *b = crt_ipc_begin(&p->ep.ipc);
  if (!b)
    return crt_errorf(L, SPAWN, "not enough memory");
  if (crt_codec_encode(L, 1, nvals, b, CRT_CODEC_NOCHANS, SPAWN ": cannot send", 0) != 0) {
    if (nvals == 1) /* the codec says "value" for a lone value: it is argument #1 */
      crt_process_gsub_top(L, SPAWN ": cannot send value", SPAWN ": cannot send argument #1");
    return lua_error(L);
  }
  if (b->len - CRT_IPC_HDR > CRT_IPC_MAXMSG)
    return crt_errorf(L, SPAWN,
                      "the function and its arguments are too large (%f MiB encoded; "
                      "the limit is %d MiB)",
                      (double)b->len / (1 << 20), (int)(CRT_IPC_MAXMSG >> 20));

  int e = crt_proc_start(p, exe);
  if (e) {
    lua_pushnil(L);
    lua_pushfstring(L, SPAWN ": cannot start %s: %s", exe, uv_strerror(e));
    lua_pushstring(L, uv_err_name(e));
    return 3;
  }
  return 1;
}

/* ---- the pool (bindings/process.lua) ----------------------------------------------- */

static const char pool_key = 'Q';

/* crt.process.pool{...}: the Lua constructor, loaded on first use. */
static int l_pool(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    size_t len;
    const char *src = crt_lua_source("process", &len);
    if (!src || luaL_loadbuffer(L, src, len, "=[crt process]") != LUA_OK)
      return crt_errorf(L, "crt.process.pool", "cannot load the pool: %s",
                        src ? lua_tostring(L, -1) : "no source");
    lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
    lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
    lua_call(L, 2, 1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pool_key);
  }
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* ---- registration --------------------------------------------------------------------- */

void crt_open_process(lua_State *L, crt_runtime *rt) {
  static const luaL_Reg methods[] = {{"send", c_send},    {"recv", c_recv},   {"await", c_await},
                                     {"kill", c_kill},    {"close", c_close}, {"_sendv", c_sendv},
                                     {"_alive", c_alive}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__index", c_index}, {"__tostring", c_tostring}, {"__gc", c_gc}, {NULL, NULL}};
  /* __index looks up pid, then the methods (its upvalue). */
  luaL_newlib(L, methods);
  crt_newclass(L, CHILD_MT, NULL, meta, 1);
  if (lua_getfield(L, -1, "process") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "process");
  }
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_spawn, 1);
  lua_setfield(L, -2, "spawn");
  lua_pushcfunction(L, l_pool);
  lua_setfield(L, -2, "pool");
  lua_pop(L, 1);
}
