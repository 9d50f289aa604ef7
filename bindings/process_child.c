/*
 * process_child.c - the start of a child crt process: crt_child_main (its
 * main(), declared in runtime/include/crt_child.h and called by cli/main.c
 * for --crt-child), which reads the function and its arguments, opens a
 * runtime, sets up crt.parent (send, recv, pid, and _sendv for the pool),
 * runs the function as the main task and sends back its results or its
 * error as the last message.
 *
 * Loop thread of the child only. The link to the parent is an endpoint of
 * the process engine (runtime/proc_msg.c); send and recv are those of child
 * objects (bindings/process.c). See docs/processes.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <lauxlib.h>

#include "codec.h"
#include "crt_child.h"
#include "process.h"
#include "util.h"

#define PARENT_MT "crt.process.parent"
#define SPAWN "crt.process.spawn"

/* ---- crt.parent ----------------------------------------------------------------- */

static crt_proc_ep *check_parent(lua_State *L, const char *fname) {
  crt_proc_ep *ep = crt_checkptr(L, 1, PARENT_MT, "crt.parent", fname);
  if (!ep)
    crt_errorf(L, fname, "the link to the parent is closed");
  return ep;
}

static int p_send(lua_State *L) { return crt_process_send(L, check_parent(L, "crt.parent:send")); }
static int p_sendv(lua_State *L) {
  return crt_process_sendv(L, check_parent(L, "crt.parent:_sendv"));
}
static int p_recv(lua_State *L) { return crt_process_recv(L, check_parent(L, "crt.parent:recv")); }

static int p_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    void **box = lua_touserdata(L, 1);
    lua_pushinteger(L, *box ? ((crt_proc_ep *)*box)->ppid : 0);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* Set crt.parent to a new object for ep. */
static void open_parent(lua_State *L, crt_proc_ep *ep) {
  static const luaL_Reg methods[] = {
      {"send", p_send}, {"recv", p_recv}, {"_sendv", p_sendv}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__index", p_index}, {NULL, NULL}};
  lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
  void **pbox = lua_newuserdatauv(L, sizeof *pbox, 0);
  *pbox = ep;
  ep->box = pbox;
  luaL_newlib(L, methods);
  crt_newclass(L, PARENT_MT, NULL, meta, 1);
  luaL_setmetatable(L, PARENT_MT);
  lua_setfield(L, -2, "parent");
  lua_pop(L, 1);
}

/* ---- the main task of a child ------------------------------------------------------ */

static int child_msgh(lua_State *L) {
  int t = lua_type(L, 1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER)
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* The function returned (status OK or YIELD) or raised: send its results
 * or its error as the last message. */
static int child_run_k(lua_State *L, int status, lua_KContext ctx) {
  crt_proc_ep *ep = lua_touserdata(L, lua_upvalueindex(1));
  (void)ctx;
  int ok = status == LUA_OK || status == LUA_YIELD;
  if (!ok && crt_sched_is_cancelled(L, -1))
    return lua_error(L); /* cancelled (the child is shutting down): nothing to send */
  int first = ok ? 2 : lua_gettop(L);
  int n = ok ? lua_gettop(L) - 1 : 1;
  unsigned kind = ok ? CRT_IPC_RESULT : CRT_IPC_FAIL;
  const char *what = ok ? SPAWN ": cannot send result" : SPAWN ": cannot send the error";
  crt_buf *b = crt_ipc_begin(&ep->ipc);
  if (!b)
    return 0;
  if (crt_codec_encode(L, first, n, b, CRT_CODEC_NOCHANS, what, 0) != 0) {
    crt_ipc_abort(&ep->ipc);
    crt_process_gsub_top(L, "result argument #", "result #");
    crt_process_gsub_top(L, "result value", "result #1");
    kind = CRT_IPC_FAIL;
    b = crt_ipc_begin(&ep->ipc);
    if (!b || crt_codec_encode(L, -1, 1, b, 0, what, 0) != 0) {
      crt_ipc_abort(&ep->ipc);
      return 0;
    }
  }
  crt_ipc_end(&ep->ipc, kind);
  return 0;
}

/* The main task of a child: fn(...) under a message handler that adds the
 * child's traceback. */
static int child_run(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  lua_pushcfunction(L, child_msgh);
  lua_insert(L, 1);
  int st = lua_pcallk(L, nargs, LUA_MULTRET, 1, 0, child_run_k);
  return child_run_k(L, st, 0);
}

/* The main task when the first message could not be used. */
static int child_bad_call(lua_State *L) { return lua_error(L); }

/* ---- main() --------------------------------------------------------------------------- */

int crt_child_main(int argc, char **argv) {
  long ppid = argc >= 3 ? strtol(argv[2], NULL, 10) : 0;
#ifdef __linux__
  /* Die with the parent. Set first, then check that the parent did not die
   * before it took effect. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* Started as /proc/self/exe, the process would be called "exe". */
  prctl(PR_SET_NAME, "crt");
#endif
  int fd = CRT_CHILD_FD;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || ppid <= 0) {
    fprintf(stderr, "crt: %s is for child processes started by crt.process.spawn\n",
            CRT_CHILD_FLAG);
    return 2;
  }
  if ((long)getppid() != ppid)
    return 1; /* the parent is already gone */
  signal(SIGPIPE, SIG_IGN);
  /* Lines printed by the parent and its children interleave in time order
   * even when stdout is a pipe or a file. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Not inherited by programs the child runs (os.execute, io.popen). */
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (fl & O_NONBLOCK)
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  crt_ipc_msg *call = crt_proc_read_call(fd);
  if (!call)
    return 1; /* the parent is gone or sent nothing usable */

  crt_config cfg;
  crt_config_init(&cfg);
  cfg.exe_path = "/proc/self/exe";
  crt_runtime *rt = crt_open(&cfg);
  if (!rt) {
    crt_ipc_msg_free(call);
    return 1;
  }
  lua_State *L = crt_lua(rt);
  crt_proc_ep *ep = crt_proc_parent_open(rt, fd, (int)ppid);
  if (!ep) {
    crt_ipc_msg_free(call);
    crt_close(rt);
    return 1;
  }
  open_parent(L, ep);
  void **pbox = ep->box;

  /* The main task: child_run(fn, args...). */
  lua_pushlightuserdata(L, ep);
  lua_pushcclosure(L, child_run, 1);
  int base = lua_gettop(L);
  int n = crt_codec_decode(L, call->data, call->len, CRT_PROCESS_CODEC_FLAGS);
  crt_ipc_msg_free(call);
  if (n < 1 || lua_type(L, base + 1) != LUA_TFUNCTION) {
    /* Run child_bad_call(message) instead: the parent gets the error. */
    lua_pushfstring(L, SPAWN ": the child cannot load the function: %s",
                    n < 0 ? lua_tostring(L, -1) : "no function in the first message");
    lua_insert(L, base + 1);
    lua_settop(L, base + 1);
    lua_pushcfunction(L, child_bad_call);
    lua_insert(L, base + 1);
    n = 2;
  }
  crt_start_main(rt, n);
  crt_step(rt, CRT_UNTIL_DONE);
  /* What was sent must reach the parent before the process ends. */
  while (*pbox && crt_ipc_writing(&ep->ipc))
    uv_run(crt_rt_loop(rt), UV_RUN_ONCE);
  int code = crt_exit_code(rt);
  crt_close(rt);
  return code;
}
