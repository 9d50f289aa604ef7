/*
 * timer.c - the deadline heap of a runtime: sleeping tasks and crt.after /
 * crt.every timers, all behind one uv_timer_t.
 *
 * Loop thread only. A binary min-heap of crt_timer pointers ordered by due
 * time (uv_hrtime nanoseconds); each timer knows its index so stopping one is
 * O(log n). The uv_timer_t is re-armed only when the earliest deadline moves
 * earlier, or after it fires, so arming 100,000 sleeps costs 100,000 heap
 * pushes and one libuv call.
 */
#include <math.h>
#include <stdlib.h>

#include "rt_impl.h"
#include "timer.h"

/* libuv timers count milliseconds; a task must never wake before its due
 * time as seen by crt.now(), so we round up and re-check on firing. */
#define NS_PER_MS 1000000ull
/* An armed "never" deadline still keeps the loop alive; it is re-armed after
 * this many milliseconds (a day), which costs nothing meanwhile. */
#define NEVER_MS (86400ull * 1000ull)

void crt_timer_init(crt_timer *tm, crt_timer_fn fire) {
  tm->due = 0;
  tm->index = CRT_TIMER_IDLE;
  tm->fire = fire;
}

static int before(const crt_timer *a, const crt_timer *b) { return a->due < b->due; }

static void heap_set(crt_runtime *rt, size_t i, crt_timer *tm) {
  rt->heap[i] = tm;
  tm->index = i;
}

static void sift_up(crt_runtime *rt, size_t i) {
  crt_timer *tm = rt->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(tm, rt->heap[parent]))
      break;
    heap_set(rt, i, rt->heap[parent]);
    i = parent;
  }
  heap_set(rt, i, tm);
}

static void sift_down(crt_runtime *rt, size_t i) {
  crt_timer *tm = rt->heap[i];
  size_t n = rt->nheap;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n)
      break;
    if (child + 1 < n && before(rt->heap[child + 1], rt->heap[child]))
      child++;
    if (!before(rt->heap[child], tm))
      break;
    heap_set(rt, i, rt->heap[child]);
    i = child;
  }
  heap_set(rt, i, tm);
}

static void heap_remove(crt_runtime *rt, crt_timer *tm) {
  size_t i = tm->index;
  crt_timer *last = rt->heap[--rt->nheap];
  tm->index = CRT_TIMER_IDLE;
  if (last == tm)
    return;
  heap_set(rt, i, last);
  if (i > 0 && before(last, rt->heap[(i - 1) / 2]))
    sift_up(rt, i);
  else
    sift_down(rt, i);
}

static void on_uvtimer(uv_timer_t *h);

/* Point the uv_timer_t at the earliest deadline (or stop it). */
static void rearm(crt_runtime *rt) {
  if (rt->nheap == 0) {
    if (rt->armed_due) {
      uv_timer_stop(&rt->uvtimer);
      rt->armed_due = 0;
    }
    return;
  }
  uint64_t due = rt->heap[0]->due;
  if (rt->armed_due == due)
    return;
  uint64_t ms;
  if (due == CRT_TIMER_NEVER) {
    ms = NEVER_MS;
  } else {
    uv_update_time(&rt->loop);
    uint64_t now = uv_hrtime();
    ms = due > now ? (due - now + NS_PER_MS - 1) / NS_PER_MS : 0;
  }
  rt->armed_due = due;
  uv_timer_start(&rt->uvtimer, on_uvtimer, ms, 0);
}

static void on_uvtimer(uv_timer_t *h) {
  crt_runtime *rt = h->data;
  rt->armed_due = 0;
  uint64_t now = uv_hrtime();
  while (rt->nheap > 0 && rt->heap[0]->due <= now) {
    crt_timer *tm = rt->heap[0];
    heap_remove(rt, tm);
    tm->fire(tm);
  }
  rearm(rt);
}

void crt_timer_start(crt_runtime *rt, crt_timer *tm, double seconds) {
  uint64_t due;
  if (!(seconds > 0)) /* also NaN, which callers reject before */
    seconds = 0;
  if (seconds >= 9.2e9) { /* about 292 years: past uint64 nanoseconds */
    due = CRT_TIMER_NEVER;
  } else {
    due = uv_hrtime() + (uint64_t)ceil(seconds * 1e9);
    if (due == CRT_TIMER_NEVER)
      due--;
  }
  if (crt_timer_armed(tm))
    heap_remove(rt, tm);
  if (rt->nheap == rt->heapcap) {
    size_t cap = rt->heapcap ? rt->heapcap * 2 : 64;
    crt_timer **heap = realloc(rt->heap, cap * sizeof *heap);
    if (!heap)
      abort(); /* the heap only grows by doubling; out of memory here is fatal */
    rt->heap = heap;
    rt->heapcap = cap;
  }
  tm->due = due;
  rt->heap[rt->nheap] = tm;
  tm->index = rt->nheap++;
  sift_up(rt, tm->index);
  if (rt->armed_due == 0 || due < rt->armed_due)
    rearm(rt);
}

void crt_timer_stop(crt_runtime *rt, crt_timer *tm) {
  if (!crt_timer_armed(tm))
    return;
  heap_remove(rt, tm);
  if (rt->nheap == 0)
    rearm(rt);
  /* Otherwise leave the uv timer as it is: firing early is harmless, the
   * callback re-arms for the next real deadline. */
}

size_t crt_timers_count(crt_runtime *rt) { return rt->nheap; }

int crt_timers_open(crt_runtime *rt) {
  rt->heap = NULL;
  rt->nheap = rt->heapcap = 0;
  rt->armed_due = 0;
  int rc = uv_timer_init(&rt->loop, &rt->uvtimer);
  rt->uvtimer.data = rt;
  return rc;
}

void crt_timers_close(crt_runtime *rt) {
  while (rt->nheap > 0)
    heap_remove(rt, rt->heap[rt->nheap - 1]);
  free(rt->heap);
  rt->heap = NULL;
  rt->heapcap = 0;
  uv_timer_stop(&rt->uvtimer);
  rt->armed_due = 0;
  if (!uv_is_closing((uv_handle_t *)&rt->uvtimer))
    uv_close((uv_handle_t *)&rt->uvtimer, NULL);
}
