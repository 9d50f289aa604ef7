/*
 * rt_impl.h - the fields of struct crt_runtime, private to the engine files
 * (runtime/ *.c) and to the C tests of the engine. The bindings and the CLI
 * see the struct as opaque and use the accessors of rt.h.
 *
 * Loop thread only, except post_head/post_tail (any thread, under post_mu).
 */
#ifndef CRT_RT_IMPL_H
#define CRT_RT_IMPL_H

#include <pthread.h>

#include "list.h"
#include "rt.h"

struct crt_task;

typedef struct crt_close_hook {
  void (*fn)(void *ud);
  void *ud;
} crt_close_hook;

struct crt_runtime {
  uv_loop_t loop;
  lua_State *L; /* the main state */
  int owns_state;
  crt_config cfg;
  int closing;

  /* Scheduler (scheduler.c). */
  crt_fifo ready; /* tasks to resume, through crt_task.rnode */
  size_t nready;
  size_t nalive;            /* tasks not finished (pinned) */
  size_t nended;            /* tasks ended so far */
  size_t nended_at_reports; /* nended when final reports last ran */
  crt_list alive;           /* live tasks (for shutdown), through crt_task.alink */
  crt_list unobserved;      /* failed tasks nobody awaited yet, through crt_task.alink */
  int ncollect_reports;     /* nreported at the last crt_step return */
  struct crt_task *main_task;
  uv_prepare_t prepare;
  uv_check_t check;
  uv_idle_t idle;
  int draining;

  /* Timers (timer.c). */
  struct crt_timer **heap;
  size_t nheap, heapcap;
  uv_timer_t uvtimer;
  uint64_t armed_due; /* what uvtimer is armed for; 0 = not armed */
  size_t nkeepalive;  /* armed after/every timers: keep crt running */

  /* Cross-thread wake-ups (rt.c): one async handle drains the post queue. */
  pthread_t thread; /* the loop thread */
  uv_async_t async;
  pthread_mutex_t post_mu;
  crt_post *post_head, *post_tail; /* under post_mu */
  int nhold;                       /* > 0: another thread may still post; keep the loop alive */

  /* Subsystems shut down (after tasks are cancelled, before handles close). */
  crt_close_hook *hooks;
  int nhooks;

  /* Outcome. */
  int exiting; /* crt.exit was called */
  int exit_code;
  int nreported; /* unawaited errors reported */
  char *error;   /* last error message (malloc'd) */
};

#endif
