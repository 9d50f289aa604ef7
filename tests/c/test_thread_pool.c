/*
 * test_thread_pool.c - the pool engine (runtime/pool.c) without the Lua API:
 * jobs in and results out through the loop, completions on the loop thread,
 * dropping queued jobs, interrupting running ones (an endless loop), closing
 * a busy pool, a dedicated (one-shot) thread, init failures and the
 * per-worker memory limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "check.h"
#include "codec.h"
#include "crt.h"
#include "pool.h"
#include "rt_impl.h"

int crt_open_worker(lua_State *L, int id); /* bindings/worker.c */

static crt_runtime *rt;
static int ncompleted, nok, nerror, ncancelled, ndropped, off_loop;
static lua_Integer sum;

static void on_complete(crt_job *j) {
  ncompleted++;
  if (!crt_rt_on_loop_thread(rt))
    off_loop++;
  switch (j->status) {
  case CRT_JOB_OK: {
    nok++;
    lua_State *L = rt->L;
    int n = crt_codec_decode(L, j->out.data, j->out.len, CRT_CODEC_FUNCTIONS);
    if (n >= 1 && lua_isinteger(L, -n))
      sum += lua_tointeger(L, -n);
    lua_pop(L, n > 0 ? n : 1);
    break;
  }
  case CRT_JOB_ERROR: nerror++; break;
  case CRT_JOB_CANCELLED: ncancelled++; break;
  case CRT_JOB_DROPPED: ndropped++; break;
  }
  crt_job_free(j);
}

static void reset(void) { ncompleted = nok = nerror = ncancelled = ndropped = 0, sum = 0; }

/* A CALL job running `src` (a chunk returning a function) with integer args. */
static crt_job *job(const char *src, int nargs, lua_Integer a) {
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  if (luaL_dostring(L, src) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    exit(1);
  }
  for (int i = 0; i < nargs; i++)
    lua_pushinteger(L, a + i);
  crt_job *j = crt_job_new();
  if (crt_codec_encode(L, top + 1, 1 + nargs, &j->in, 0, "test", 0) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    exit(1);
  }
  lua_settop(L, top);
  j->kind = CRT_JOB_CALL;
  j->complete = on_complete;
  return j;
}

static void run_until(int completed) {
  while (ncompleted < completed)
    uv_run(&rt->loop, UV_RUN_ONCE);
}

static crt_pool *pool(int size, int oneshot, size_t memory, const char *init_src) {
  crt_pool_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = size;
  cfg.oneshot = oneshot;
  cfg.memory = memory;
  cfg.open = crt_open_worker;
  crt_buf init;
  crt_buf_init(&init);
  if (init_src) {
    lua_State *L = rt->L;
    luaL_dostring(L, init_src);
    crt_codec_encode(L, -1, 1, &init, 0, "init", 0);
    lua_pop(L, 1);
    cfg.init = init.data;
    cfg.init_len = init.len;
  }
  crt_pool *p = crt_pool_new(rt, &cfg);
  crt_buf_free(&init);
  return p;
}

static void test_many(void) {
  reset();
  crt_pool *p = pool(3, 0, 0, NULL);
  CHECK(crt_pool_live_threads() == 0); /* nothing starts before the first job */
  enum { N = 2000 };
  crt_job *jobs[N];
  for (int i = 0; i < N; i++)
    jobs[i] = job("return function(a) return a * 2 end", 1, i);
  CHECK(crt_pool_submit(p, jobs, N / 2) == 0);
  for (int i = N / 2; i < N; i++)
    CHECK(crt_pool_submit(p, &jobs[i], 1) == 0);
  CHECK(crt_pool_live_threads() == 3);
  run_until(N);
  CHECK(nok == N);
  CHECK(sum == (lua_Integer)N * (N - 1));
  CHECK(off_loop == 0);
  CHECK(rt->nhold == 0);
  crt_pool_free(p);
  CHECK(crt_pool_live_threads() == 0);
}

static void test_cancel(void) {
  reset();
  crt_pool *p = pool(1, 0, 0, NULL);
  crt_job *spin = job("return function() while true do end end", 0, 0);
  crt_job *queued = job("return function() return 1 end", 0, 0);
  crt_job *jobs[2] = {spin, queued};
  CHECK(crt_pool_submit(p, jobs, 2) == 0);
  crt_pool_cancel(queued); /* still queued: dropped right now */
  CHECK(ndropped == 1 && ncompleted == 1);
  crt_pool_cancel(spin); /* running (or about to): interrupted */
  run_until(2);
  CHECK(ncancelled + ndropped == 2);
  /* The worker's state serves the next job. */
  crt_job *after = job("return function(a) return a + 1 end", 1, 41);
  CHECK(crt_pool_submit(p, &after, 1) == 0);
  run_until(3);
  CHECK(nok == 1 && sum == 42);
  crt_pool_free(p);
}

static void test_close_busy(void) {
  reset();
  crt_pool *p = pool(2, 0, 0, NULL);
  enum { N = 10 };
  crt_job *jobs[N];
  for (int i = 0; i < N; i++)
    jobs[i] = job("return function() while true do end end", 0, 0);
  CHECK(crt_pool_submit(p, jobs, N) == 0);
  crt_pool_close(p); /* joins: the two running jobs were interrupted */
  CHECK(crt_pool_closed(p));
  CHECK(crt_pool_submit(p, jobs, 0) == UV_EPIPE);
  run_until(N);
  CHECK(ncancelled + ndropped == N);
  CHECK(rt->nhold == 0);
  crt_pool_free(p);
}

static void test_oneshot(void) {
  reset();
  crt_pool *p = pool(1, 1, 0, NULL);
  crt_job *j = job("return function(a, b) return a + b end", 2, 20);
  CHECK(crt_pool_submit(p, &j, 1) == 0);
  run_until(1);
  CHECK(nok == 1 && sum == 41);
  crt_pool_free(p);
  CHECK(crt_pool_live_threads() == 0);
}

static void test_init_and_memory(void) {
  reset();
  crt_pool *p = pool(2, 0, 0, "return function() error('init boom') end");
  crt_job *j = job("return function() return 1 end", 0, 0);
  CHECK(crt_pool_submit(p, &j, 1) == 0);
  run_until(1);
  CHECK(nerror == 1);
  CHECK(crt_pool_init_error(p) && strstr(crt_pool_init_error(p), "init boom"));
  crt_pool_free(p);

  reset();
  p = pool(1, 0, 32 * 1024 * 1024, NULL);
  crt_job *hog = job("return function() local t = {} for i = 1, 1e9 do t[i] = {i} end end", 0, 0);
  crt_job *ok = job("return function() return 7 end", 0, 0);
  crt_job *jobs[2] = {hog, ok};
  CHECK(crt_pool_submit(p, jobs, 2) == 0);
  run_until(2);
  CHECK(nerror == 1 && nok == 1 && sum == 7);
  crt_pool_free(p);
}

static int abandoned;
static void on_abandoned(crt_post *post) {
  (void)post;
  abandoned = 1;
}

/* A pool given up while a (detached) job still runs: the loop is not kept
 * waiting; the last thread's exit is posted, and the pool is freed then. */
static void test_abandon(void) {
  reset();
  crt_pool *p = pool(2, 0, 0, NULL);
  crt_job *spin = job("return function() while true do end end", 0, 0);
  CHECK(crt_pool_submit(p, &spin, 1) == 0);
  crt_post post = {NULL, on_abandoned};
  abandoned = 0;
  if (crt_pool_abandon(p, &post) == 0) {
    crt_rt_hold(rt, 1); /* the exit post is not a job: keep the loop polling */
    while (!abandoned || ncompleted < 1)
      uv_run(&rt->loop, UV_RUN_ONCE);
    crt_rt_hold(rt, -1);
  } else {
    run_until(1);
  }
  CHECK(ncancelled + ndropped == 1);
  crt_pool_free(p);
  CHECK(crt_pool_live_threads() == 0);
}

int main(void) {
  rt = crt_open(NULL);
  if (!rt)
    return 1;
  test_many();
  test_cancel();
  test_close_busy();
  test_oneshot();
  test_init_and_memory();
  test_abandon();
  crt_close(rt);
  if (check_failures) {
    fprintf(stderr, "%d check(s) failed\n", check_failures);
    return 1;
  }
  printf("thread_pool: ok\n");
  return 0;
}
