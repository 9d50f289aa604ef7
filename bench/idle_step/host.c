/*
 * host.c - benchmark of idle crt_step calls (issue 14): an engine steps the
 * runtime once per frame, most frames with no task alive. Measures the time
 * of one crt_step(rt, CRT_NOWAIT) in four cases, and the floor:
 *
 *   empty       a runtime with nothing to do
 *   heap        the same with a game-sized Lua heap (N small tables)
 *   heap_task   the same heap and one task sleeping (so the runtime is busy)
 *   heap_after  the heap, after a burst of tasks that ended (the first idle
 *               step reports their failures once; the rest must stay cheap)
 *   floor       uv_run(UV_RUN_NOWAIT) on an empty libuv loop: the least a
 *               step that polls I/O can cost
 *
 * Prints one line: RESULT empty_ns=.. heap_ns=.. heap_task_ns=.. heap_after_ns=..
 * floor_ns=.. (nanoseconds per step, median of 5 batches). Usage:
 * host [tables] [steps]. Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include <crt.h>

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median over 5 batches of `steps` idle steps, in ns per step. */
static double time_steps(crt_runtime *rt, long steps) {
  double batch[5];
  for (int b = 0; b < 5; b++) {
    double t0 = now_ns();
    for (long i = 0; i < steps; i++)
      if (crt_step(rt, CRT_NOWAIT) < 0) {
        fprintf(stderr, "crt_step failed: %s\n", crt_error(rt));
        exit(1);
      }
    batch[b] = (now_ns() - t0) / (double)steps;
  }
  qsort(batch, 5, sizeof batch[0], cmp);
  return batch[2];
}

static crt_runtime *open_rt(long tables) {
  crt_config cfg;
  crt_config_init(&cfg);
  crt_runtime *rt = crt_open(&cfg);
  if (!rt) {
    fprintf(stderr, "crt_open failed\n");
    exit(1);
  }
  lua_State *L = crt_lua(rt);
  /* The game's heap: tables kept alive in a global. */
  char chunk[160];
  snprintf(chunk, sizeof chunk,
           "heap = {} for i = 1, %ld do heap[i] = {x = i, y = i, name = 'e'} end", tables);
  if (luaL_dostring(L, chunk) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    exit(1);
  }
  return rt;
}

/* Start chunk as the main task and step once: returns what the step did. */
static int run_chunk(crt_runtime *rt, const char *chunk) {
  if (crt_dostring(rt, chunk, "=bench") != 0) {
    fprintf(stderr, "%s\n", crt_error(rt));
    exit(1);
  }
  return crt_step(rt, CRT_NOWAIT);
}

static void silent(void *ud, crt_log_level level, const char *msg) {
  (void)ud;
  (void)level;
  (void)msg;
}

int main(int argc, char **argv) {
  long tables = argc > 1 ? atol(argv[1]) : 200000;
  long steps = argc > 2 ? atol(argv[2]) : 2000;

  crt_runtime *rt = open_rt(0);
  double empty = time_steps(rt, steps * 10);
  crt_close(rt);

  rt = open_rt(tables);
  double heap = time_steps(rt, steps);
  crt_close(rt);

  rt = open_rt(tables);
  run_chunk(rt, "crt.spawn(function() crt.sleep(3600) end)");
  double heap_task = time_steps(rt, steps);
  crt_close(rt);

  /* A burst of tasks, one failing unawaited: reported once, then idle. */
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.log = silent;
  rt = crt_open(&cfg);
  luaL_dostring(crt_lua(rt), "heap = {} for i = 1, 200000 do heap[i] = {x = i} end");
  int first = run_chunk(
      rt, "for i = 1, 100 do crt.spawn(function() if i == 1 then error('x') end end) end");
  if (first != CRT_EFAILED) {
    fprintf(stderr, "the unawaited failure was not reported (step returned %d)\n", first);
    return 1;
  }
  double heap_after = time_steps(rt, steps);
  crt_close(rt);

  uv_loop_t loop;
  uv_loop_init(&loop);
  double fl[5];
  for (int b = 0; b < 5; b++) {
    double t0 = now_ns();
    for (long i = 0; i < steps * 10; i++)
      uv_run(&loop, UV_RUN_NOWAIT);
    fl[b] = (now_ns() - t0) / (double)(steps * 10);
  }
  qsort(fl, 5, sizeof fl[0], cmp);
  uv_loop_close(&loop);

  printf("RESULT empty_ns=%.0f heap_ns=%.0f heap_task_ns=%.0f heap_after_ns=%.0f floor_ns=%.0f "
         "tables=%ld\n",
         empty, heap, heap_task, heap_after, fl[2], tables);
  return 0;
}
