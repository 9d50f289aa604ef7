/*
 * test_timer.c - the deadline heap (runtime/timer.c): ordering under random
 * arming, re-arming and stopping, "never" deadlines, and the uv timer left
 * in a state where the loop can close.
 */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "crt.h"
#include "rt_impl.h"
#include "timer.h"

#define N 2000

typedef struct probe {
  crt_timer tm;
  int id;
  uint64_t fired_at;
} probe;

static probe probes[N];
static int fired[N];
static int nfired;

static void on_fire(crt_timer *tm) {
  probe *p = (probe *)tm;
  p->fired_at = uv_hrtime();
  fired[nfired++] = p->id;
}

static void run_until_idle(crt_runtime *rt) {
  while (crt_timers_count(rt) > 0) {
    /* "never" timers stay armed: stop when only those remain */
    int only_never = 1;
    for (size_t i = 0; i < rt->nheap; i++)
      if (rt->heap[i]->due != CRT_TIMER_NEVER)
        only_never = 0;
    if (only_never)
      break;
    uv_run(&rt->loop, UV_RUN_ONCE);
  }
}

static void test_order(void) {
  crt_runtime *rt = crt_open(NULL);
  srand(42);
  nfired = 0;
  for (int i = 0; i < N; i++) {
    probes[i].id = i;
    crt_timer_init(&probes[i].tm, on_fire);
    crt_timer_start(rt, &probes[i].tm, (rand() % 20) / 1000.0);
  }
  /* Re-arm a third, stop a third. */
  for (int i = 0; i < N; i += 3)
    crt_timer_start(rt, &probes[i].tm, (rand() % 20) / 1000.0);
  int stopped = 0;
  for (int i = 1; i < N; i += 3) {
    crt_timer_stop(rt, &probes[i].tm);
    stopped++;
    CHECK(!crt_timer_armed(&probes[i].tm));
  }
  CHECK(crt_timers_count(rt) == (size_t)(N - stopped));
  run_until_idle(rt);
  CHECK(nfired == N - stopped);
  /* Fired in deadline order, never before the deadline. */
  for (int k = 1; k < nfired; k++)
    CHECK(probes[fired[k - 1]].tm.due <= probes[fired[k]].tm.due);
  for (int k = 0; k < nfired; k++)
    CHECK(probes[fired[k]].fired_at >= probes[fired[k]].tm.due);
  crt_close(rt);
}

static void test_clamps(void) {
  crt_runtime *rt = crt_open(NULL);
  crt_timer a, b, c;
  crt_timer_init(&a, on_fire);
  crt_timer_init(&b, on_fire);
  crt_timer_init(&c, on_fire);
  crt_timer_start(rt, &a, -5);    /* negative: due now */
  crt_timer_start(rt, &b, 1e300); /* huge: never */
  crt_timer_start(rt, &c, 1.0 / 0.0);
  CHECK(b.due == CRT_TIMER_NEVER);
  CHECK(c.due == CRT_TIMER_NEVER);
  CHECK(a.due <= uv_hrtime());
  crt_timer_stop(rt, &b);
  crt_timer_stop(rt, &b); /* stopping twice is harmless */
  crt_timer_stop(rt, &c);
  crt_timer_stop(rt, &a);
  CHECK(crt_timers_count(rt) == 0);
  crt_close(rt); /* closes with nothing armed */
}

static void test_close_armed(void) {
  crt_runtime *rt = crt_open(NULL);
  crt_timer a;
  crt_timer_init(&a, on_fire);
  crt_timer_start(rt, &a, 100);
  crt_close(rt); /* an armed timer does not keep close from finishing */
}

int main(void) {
  test_order();
  test_clamps();
  test_close_armed();
  return CHECK_RESULT("timer");
}
