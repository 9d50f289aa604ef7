/*
 * test_chan_threads.c - channels shared between the loop's tasks and plain
 * threads (each with its own Lua state and tctx, as pool workers have):
 * blocking sends and receives in threads, tasks parked and woken through the
 * loop, many producers and consumers, select with a timeout in a thread,
 * closing, and interrupting a blocked thread. Run under ThreadSanitizer too.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "chan.h"
#include "channel.h"
#include "codec.h"
#include "lib.h"
#include "check.h"
#include "crt.h"
#include "scheduler.h"
#include "tctx.h"

#define NWORKERS 4
#define PER_WORKER 2000

typedef struct worker {
  pthread_t thread;
  crt_tctx tc;
  const char *script; /* run with the decoded channels as arguments */
  char *chans;        /* crt.codec.encode{...} of the channels */
  size_t chans_len;
  char error[512];
  int id;
} worker;

/* A worker state: the standard library and a crt table with channel,
 * select, codec and Cancelled, as the pool's workers will have. */
static lua_State *worker_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  crt_open_channel(L);
  crt_open_codec(L);
  lua_setfield(L, -2, "codec");
  lua_newuserdatauv(L, 0, 0);
  lua_pushvalue(L, -1);
  crt_sched_set_cancelled(L);
  lua_setfield(L, -2, "Cancelled");
  lua_setglobal(L, "crt");
  return L;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  crt_tctx_enter(&w->tc);
  lua_State *L = worker_state();
  int n = crt_codec_decode(L, w->chans, w->chans_len, 0);
  if (n != 1 || luaL_loadstring(L, w->script) != LUA_OK) {
    snprintf(w->error, sizeof w->error, "setup: %s", lua_tostring(L, -1));
  } else {
    lua_insert(L, -2);
    lua_pushinteger(L, w->id);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      snprintf(w->error, sizeof w->error, "%s", lua_tostring(L, -1));
  }
  lua_close(L);
  crt_chan_thread_cleanup();
  crt_tctx_enter(NULL);
  return NULL;
}

static void start(worker *ws, int n, const char *script, crt_runtime *rt) {
  lua_State *L = crt_lua(rt);
  lua_getglobal(L, "encoded");
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  for (int i = 0; i < n; i++) {
    memset(&ws[i], 0, sizeof ws[i]);
    crt_tctx_init(&ws[i].tc);
    ws[i].id = i + 1;
    ws[i].script = script;
    ws[i].chans = malloc(len);
    memcpy(ws[i].chans, s, len);
    ws[i].chans_len = len;
    pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
  }
  lua_pop(L, 1);
}

static void join(worker *ws, int n) {
  for (int i = 0; i < n; i++) {
    pthread_join(ws[i].thread, NULL);
    if (ws[i].error[0]) {
      fprintf(stderr, "worker %d: %s\n", ws[i].id, ws[i].error);
      check_failures++;
    }
    crt_tctx_destroy(&ws[i].tc);
    free(ws[i].chans);
  }
}

static int run_script(crt_runtime *rt, const char *src) {
  if (crt_dostring(rt, src, "=main") != 0) {
    fprintf(stderr, "load: %s\n", crt_error(rt));
    return -1;
  }
  return 0;
}

/* Threads produce into a small buffered channel, a task consumes; then a
 * task produces into a rendezvous channel that threads consume. */
static void test_producers_consumers(void) {
  crt_runtime *rt = crt_open(NULL);
  lua_State *L = crt_lua(rt);
  luaL_dostring(L, "up, down = crt.channel(3), crt.channel(0)\n"
                   "encoded = crt.codec.encode({up, down})");
  worker ws[NWORKERS];
  start(ws, NWORKERS,
        "local chans, id = ...\n"
        "local up, down = chans[1], chans[2]\n"
        "for i = 1, "
        "2000"
        " do up:send({id = id, i = i}) end\n"
        "local got = 0\n"
        "for v in down:iter() do got = got + v end\n"
        "up:send({id = id, got = got})\n",
        rt);
  CHECK(run_script(rt, "local seen, sum, per = 0, 0, {}\n"
                       "for _ = 1, 4 * 2000 do\n"
                       "  local m = up:recv()\n"
                       "  assert((per[m.id] or 0) + 1 == m.i, 'order')\n"
                       "  per[m.id] = m.i\n"
                       "  seen = seen + 1\n"
                       "end\n"
                       "for i = 1, 1000 do down:send(i) end\n"
                       "down:close()\n"
                       "local total = 0\n"
                       "for _ = 1, 4 do total = total + up:recv().got end\n"
                       "result = seen * 1000000 + total\n") == 0);
  int rc = crt_step(rt, CRT_UNTIL_DONE);
  CHECK(rc == 0);
  if (rc != 0)
    fprintf(stderr, "step: %d %s\n", rc, crt_error(rt));
  join(ws, NWORKERS);
  lua_getglobal(L, "result");
  CHECK(lua_tointeger(L, -1) == (lua_Integer)NWORKERS * PER_WORKER * 1000000 + 500500);
  lua_pop(L, 1);
  crt_close(rt);
}

/* select in a thread: a timeout, then a case woken by a task. */
static void test_thread_select(void) {
  crt_runtime *rt = crt_open(NULL);
  lua_State *L = crt_lua(rt);
  luaL_dostring(L, "a, b = crt.channel(), crt.channel()\n"
                   "encoded = crt.codec.encode({a, b})");
  worker ws[1];
  start(ws, 1,
        "local c = ...\n"
        "local i, v = crt.select{{c[1], 'recv'}, timeout = 0.01}\n"
        "assert(i == nil and v == 'timeout', 'timeout expected')\n"
        "c[2]:send('ready')\n"
        "i, v = crt.select{{c[1], 'recv'}, {c[2], 'recv'}}\n"
        "assert(i == 1 and v == 'hello', 'case 1 expected')\n"
        "c[2]:send('done')\n",
        rt);
  CHECK(run_script(rt, "assert(b:recv() == 'ready') a:send('hello')\n"
                       "result = b:recv()") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  join(ws, 1);
  lua_getglobal(L, "result");
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "done") == 0);
  lua_pop(L, 1);
  crt_close(rt);
}

/* A thread blocked in recv is interrupted: it raises crt.Cancelled; and a
 * task parked on a shared channel is cancelled cleanly. */
static void test_interrupt(void) {
  crt_runtime *rt = crt_open(NULL);
  lua_State *L = crt_lua(rt);
  luaL_dostring(L, "a, b = crt.channel(), crt.channel()\n"
                   "encoded = crt.codec.encode({a, b})");
  worker ws[1];
  start(ws, 1,
        "local c = ...\n"
        "c[2]:send('blocking')\n"
        "local ok, err = pcall(c[1].recv, c[1])\n"
        "assert(not ok and err == crt.Cancelled, 'cancelled expected')\n",
        rt);
  CHECK(run_script(rt, "assert(b:recv() == 'blocking')\n"
                       "local t = crt.spawn(function() return a:recv() end)\n"
                       "crt.yield() t:cancel()\n"
                       "assert(select(2, pcall(t.await, t)) == crt.Cancelled)\n") == 0);
  CHECK(crt_step(rt, CRT_UNTIL_DONE) == 0);
  /* The worker is blocked in recv now (or about to be): interrupt it. */
  crt_tctx_interrupt(&ws[0].tc);
  join(ws, 1);
  crt_close(rt);
}

int main(void) {
  test_producers_consumers();
  test_thread_select();
  test_interrupt();
  return CHECK_RESULT("chan_threads");
}
