/*
 * test_embed.c - the embedding API (crt.h): crt_open/crt_lua/crt_dostring/
 * crt_dofile/crt_step in its three modes/crt_error/crt_exit_code/crt_close,
 * the log hook, closing with tasks, timers and channel waiters pending, the
 * allocator hook, and crt_close's check that the loop closed (status 70).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "check.h"
#include "crt.h"
#include "rt.h"
#include "scheduler.h"

static char logged[4096];
static int nlogged;

static void on_log(void *ud, crt_log_level level, const char *msg) {
  (void)ud;
  (void)level;
  nlogged++;
  snprintf(logged, sizeof logged, "%s", msg);
}

static crt_runtime *open_logged(void) {
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.log = on_log;
  nlogged = 0;
  logged[0] = 0;
  return crt_open(&cfg);
}

static int global_int(crt_runtime *rt, const char *name) {
  lua_State *L = crt_lua(rt);
  lua_getglobal(L, name);
  int v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static void test_until_done(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "crt.sleep(0.001) x = 1 + (crt.spawn(function() return 1 end):await())",
                     "=t") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  CHECK(global_int(rt, "x") == 2);
  CHECK(crt_exit_code(rt) == 0);
  CHECK(strcmp(crt_error(rt), "") == 0);
  crt_close(rt);
}

static void test_nowait_frames(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "n = 0 for i = 1, 3 do crt.sleep(0.002) n = n + 1 end", "=t") == 0);
  int frames = 0, pending;
  while ((pending = crt_step(rt, CRT_NOWAIT)) > 0 && frames < 100000)
    frames++;
  CHECK(pending == 0);
  CHECK(frames > 1); /* it did not block: several frames passed */
  CHECK(global_int(rt, "n") == 3);
  crt_close(rt);
}

static void test_once(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "crt.sleep(0.001) done = 1", "=t") == 0);
  int guard = 0;
  while (crt_step(rt, CRT_ONCE) > 0 && guard++ < 1000)
    ;
  CHECK(global_int(rt, "done") == 1);
  crt_close(rt);
}

static void test_errors(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "x = ", "=bad") == CRT_ESYNTAX);
  CHECK(strstr(crt_error(rt), "bad:1:") != NULL);
  CHECK(crt_dofile(rt, "/nonexistent.lua") == CRT_EFILE);
  CHECK(strstr(crt_error(rt), "nonexistent") != NULL);
  /* An error in the main task: logged with its traceback, exit status 1. */
  CHECK(crt_dostring(rt, "local function f() error('main boom') end f()", "=m") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == CRT_EEXIT);
  CHECK(crt_exit_code(rt) == 1);
  CHECK(nlogged == 1);
  CHECK(strstr(logged, "main boom") && strstr(logged, "stack traceback"));
  CHECK(strstr(crt_error(rt), "main boom") != NULL);
  crt_close(rt);
}

static void test_unawaited(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "crt.spawn(function() error('lost') end)", "=u") == 0);
  int rc = crt_step(rt, CRT_UNTIL_DONE);
  CHECK(rc == CRT_EFAILED);
  CHECK(crt_exit_code(rt) == 1);
  CHECK(strstr(logged, "nobody awaited") && strstr(logged, "lost"));
  crt_close(rt);
}

/* Issue 14, bug 2: an idle crt_step (no task alive) runs no full garbage
 * collection, and unawaited failures are still reported once each. The
 * collector is stopped, so only an explicit full collection can run the
 * finalizer of the garbage made between steps. */
static void test_idle_steps(void) {
  crt_runtime *rt = open_logged();
  lua_State *L = crt_lua(rt);
  CHECK(crt_dostring(
            rt, "for i = 1, 10 do crt.spawn(function() if i == 1 then error('first') end end) end",
            "=idle") == 0);
  CHECK(crt_step(rt, CRT_NOWAIT) == CRT_EFAILED);
  CHECK(nlogged == 1 && strstr(logged, "first"));
  lua_gc(L, LUA_GCSTOP);
  CHECK(luaL_dostring(L, "collected = false\n"
                         "setmetatable({}, {__gc = function() collected = true end})") == LUA_OK);
  for (int i = 0; i < 100; i++)
    CHECK(crt_step(rt, CRT_NOWAIT) == 0);
  CHECK(global_int(rt, "collected") == 0); /* false: no full collection ran */
  lua_getglobal(L, "collected");
  CHECK(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
  lua_pop(L, 1);
  CHECK(nlogged == 1);
  lua_gc(L, LUA_GCRESTART);
  /* A new burst with a failure is reported at the next idle step. */
  CHECK(luaL_dostring(L, "crt.spawn(function() error('second') end)") == LUA_OK);
  CHECK(crt_step(rt, CRT_NOWAIT) == CRT_EFAILED);
  CHECK(nlogged == 2 && strstr(logged, "second"));
  CHECK(crt_step(rt, CRT_NOWAIT) == 0);
  crt_close(rt);
}

static void test_exit(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "crt.spawn(crt.sleep, 100) crt.exit(9)", "=e") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == CRT_EEXIT);
  CHECK(crt_exit_code(rt) == 9);
  CHECK(crt_step(rt, CRT_NOWAIT) == CRT_EEXIT); /* stays exited */
  crt_close(rt);
}

static void test_deadlock(void) {
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt, "crt.channel(0):recv()", "=d") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == CRT_EDEADLOCK);
  CHECK(strstr(logged, "deadlock") != NULL);
  CHECK(crt_exit_code(rt) == 1);
  crt_close(rt);
}

static void test_close_pending(void) {
  /* Close with sleepers, channel waiters, awaiters, timers and a task that
   * catches the cancel and waits again: everything is freed (ASan/valgrind). */
  crt_runtime *rt = open_logged();
  CHECK(crt_dostring(rt,
                     "local ch = crt.channel(0)\n"
                     "crt.spawn(function() ch:recv() end)\n"
                     "crt.spawn(function() ch:send({1, 2}) end)\n"
                     "local t = crt.spawn(crt.sleep, 100)\n"
                     "crt.spawn(function() t:await() end)\n"
                     "crt.spawn(function() pcall(crt.sleep, 100) crt.sleep(100) end)\n"
                     "crt.spawn(function() crt.select{{ch, 'recv'}, timeout = 100} end)\n"
                     "crt.every(0.5, print)\n"
                     "cleaned = 0\n"
                     "crt.spawn(function() local ok = pcall(crt.sleep, 100) cleaned = 1 end)\n",
                     "=p") == 0);
  for (int i = 0; i < 5; i++)
    crt_step(rt, CRT_NOWAIT);
  CHECK(crt_step(rt, CRT_NOWAIT) > 0);
  lua_State *L = crt_lua(rt);
  crt_close(rt);
  (void)L;
}

static void test_module_entry(void) {
  /* luaopen_crt on a runtime's own state returns the same table. */
  crt_runtime *rt = open_logged();
  lua_State *L = crt_lua(rt);
  luaL_requiref(L, "crt", luaopen_crt, 0);
  lua_getglobal(L, "crt");
  CHECK(lua_rawequal(L, -1, -2));
  lua_pop(L, 2);
  crt_close(rt);
}

/* A future (a task without a coroutine) completed from C: awaited from Lua,
 * and a failure nobody awaits is reported. */
static void test_future(void) {
  crt_runtime *rt = open_logged();
  lua_State *L = crt_lua(rt);
  crt_task *f = crt_task_future(rt, L, NULL, NULL);
  lua_setglobal(L, "fut");
  CHECK(crt_dostring(rt, "st = fut:status() a, b = fut:await()", "=f") == 0);
  for (int i = 0; i < 3; i++)
    CHECK(crt_step(rt, CRT_NOWAIT) > 0); /* the main task waits for it */
  lua_pushinteger(L, 7);
  lua_pushliteral(L, "x");
  crt_task_complete(f, L, 1, 2);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  CHECK(global_int(rt, "a") == 7);
  lua_getglobal(L, "b");
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "x") == 0);
  lua_getglobal(L, "st");
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "running") == 0);
  lua_pop(L, 2);

  crt_task *g = crt_task_future(rt, L, NULL, NULL);
  lua_pop(L, 1); /* nobody keeps it: its failure must still be reported */
  lua_pushliteral(L, "future failed");
  crt_task_complete(g, L, 0, 1);
  crt_step(rt, CRT_UNTIL_DONE);
  CHECK(strstr(logged, "nobody awaited") && strstr(logged, "future failed"));
  CHECK(crt_exit_code(rt) == 1);
  crt_close(rt);
}

/* A handle whose owner's close function forgets to close it (a binding bug,
 * see crt_handle_close_fn in rt.h): crt_close notices that the loop cannot
 * close, logs the handle and returns 70. */
typedef struct buggy_owner {
  crt_handle_close_fn close; /* first, as rt.h asks */
} buggy_owner;

static void forget_to_close(uv_handle_t *h) { (void)h; }

static void test_loop_not_closed(void) {
  crt_runtime *rt = open_logged();
  static uv_timer_t leaked;
  static buggy_owner owner = {forget_to_close};
  CHECK(uv_timer_init(crt_rt_loop(rt), &leaked) == 0);
  leaked.data = &owner;
  CHECK(crt_dostring(rt, "crt.sleep(0)", "=l") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  CHECK(crt_close(rt) == CRT_EX_SOFTWARE);
  CHECK(nlogged == 1);
  CHECK(strstr(logged, "crt: internal error: 1 libuv handle(s) still open at close (timer)") !=
        NULL);
  /* The clean case: 0. */
  rt = open_logged();
  CHECK(crt_dostring(rt, "crt.sleep(0)", "=l") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  CHECK(crt_close(rt) == 0);
  CHECK(nlogged == 0);
}

/* crt_config.alloc: the main state and the thread workers' states allocate
 * through the host's function (workers call it from their own threads). */
static _Atomic size_t nalloc, nalloc_other;
static pthread_t main_thread;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)osize;
  CHECK(ud == &nalloc);
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  nalloc++;
  if (!pthread_equal(pthread_self(), main_thread))
    nalloc_other++;
  return realloc(ptr, nsize);
}

static void test_alloc_hook(void) {
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.alloc = counting_alloc;
  cfg.alloc_ud = &nalloc;
  crt_runtime *rt = crt_open(&cfg);
  CHECK(rt != NULL);
  size_t after_open = nalloc;
  CHECK(after_open > 100);
  void *ud = NULL;
  CHECK(lua_getallocf(crt_lua(rt), &ud) == counting_alloc && ud == &nalloc);
  CHECK(crt_dostring(rt, "local t = {} for i = 1, 100 do t[i] = {i} end crt.sleep(0)", "=a") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  CHECK(nalloc > after_open + 100);
  CHECK(nalloc_other == 0);
  CHECK(
      crt_dostring(rt,
                   "assert(crt.thread.run(function() local t = {} for i = 1, 100 do t[i] = {i} end "
                   "return #t end):await() == 100)",
                   "=w") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  CHECK(nalloc_other > 100); /* the worker's state used the hook too */
  CHECK(crt_close(rt) == 0);
}

int main(void) {
  main_thread = pthread_self();
  test_until_done();
  test_nowait_frames();
  test_once();
  test_errors();
  test_unawaited();
  test_idle_steps();
  test_exit();
  test_deadlock();
  test_close_pending();
  test_module_entry();
  test_future();
  test_loop_not_closed();
  test_alloc_hook();
  return CHECK_RESULT("embed");
}
