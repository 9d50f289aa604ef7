/*
 * timer.h - deadlines of sleeping tasks and crt.after/every timers, kept in
 * one binary min-heap per runtime behind a single uv_timer_t.
 *
 * Loop thread only. A crt_timer is embedded in its owner (a task, a timer
 * object); the heap stores pointers, so arming and disarming allocate nothing
 * once the heap array has grown.
 */
#ifndef CRT_TIMER_H
#define CRT_TIMER_H

#include <stddef.h>
#include <stdint.h>

struct crt_runtime;
struct crt_timer;

typedef void (*crt_timer_fn)(struct crt_timer *tm);

typedef struct crt_timer {
  uint64_t due;      /* uv_hrtime() nanoseconds; UINT64_MAX = never */
  size_t index;      /* position in the heap; CRT_TIMER_IDLE when not armed */
  crt_timer_fn fire; /* called on the loop thread once due, already disarmed */
} crt_timer;

#define CRT_TIMER_IDLE ((size_t)-1)
#define CRT_TIMER_NEVER UINT64_MAX

void crt_timer_init(crt_timer *tm, crt_timer_fn fire);
/* Arm tm to fire `seconds` from now (clamped: < 0 is 0, inf or > ~292 years
 * is never). Re-arming an armed timer moves it. */
void crt_timer_start(struct crt_runtime *rt, crt_timer *tm, double seconds);
void crt_timer_stop(struct crt_runtime *rt, crt_timer *tm);
static inline int crt_timer_armed(const crt_timer *tm) { return tm->index != CRT_TIMER_IDLE; }

/* Runtime set-up and tear-down of the heap and its uv_timer_t. */
int crt_timers_open(struct crt_runtime *rt);
void crt_timers_close(struct crt_runtime *rt);
/* Number of armed timers. */
size_t crt_timers_count(struct crt_runtime *rt);

#endif
