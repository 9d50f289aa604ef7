/*
 * tctx.c - waiting contexts of threads without a loop (see tctx.h): a mutex,
 * a condition variable, a "signalled" flag and an "interrupted" flag.
 *
 * The owner thread waits; any thread signals or interrupts. Lock order: mu is
 * a leaf lock (nothing else is taken while holding it).
 */
#include <errno.h>
#include <time.h>

#include "tctx.h"

static _Thread_local crt_tctx *current;

int crt_tctx_init(crt_tctx *c) {
  c->signalled = 0;
  c->ud = NULL;
  atomic_init(&c->interrupted, 0);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_mutex_init(&c->mu, NULL);
  if (rc == 0)
    rc = pthread_cond_init(&c->cv, &attr);
  pthread_condattr_destroy(&attr);
  return rc ? -1 : 0;
}

void crt_tctx_destroy(crt_tctx *c) {
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
}

crt_tctx *crt_tctx_current(void) { return current; }
void crt_tctx_enter(crt_tctx *c) { current = c; }

int crt_tctx_wait(crt_tctx *c, double seconds) {
  struct timespec deadline;
  if (seconds >= 0) {
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (seconds > 1e9)
      seconds = 1e9;
    time_t whole = (time_t)seconds;
    long ns = (long)((seconds - (double)whole) * 1e9);
    deadline.tv_sec += whole;
    deadline.tv_nsec += ns;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  int result = 0;
  pthread_mutex_lock(&c->mu);
  for (;;) {
    if (atomic_load(&c->interrupted)) {
      result = -1;
      break;
    }
    if (c->signalled) {
      c->signalled = 0;
      result = 1;
      break;
    }
    if (seconds < 0) {
      pthread_cond_wait(&c->cv, &c->mu);
    } else if (pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == ETIMEDOUT) {
      if (atomic_load(&c->interrupted))
        result = -1;
      else if (c->signalled) {
        c->signalled = 0;
        result = 1;
      }
      break;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return result;
}

void crt_tctx_signal(crt_tctx *c) {
  pthread_mutex_lock(&c->mu);
  c->signalled = 1;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

void crt_tctx_interrupt(crt_tctx *c) {
  pthread_mutex_lock(&c->mu);
  atomic_store(&c->interrupted, 1);
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

void crt_tctx_clear_interrupt(crt_tctx *c) { atomic_store(&c->interrupted, 0); }
