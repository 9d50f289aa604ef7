/*
 * tctx.h - the waiting context of a thread that has no event loop (a pool
 * worker or a dedicated thread): where its blocking calls (channel send and
 * recv, crt.sleep, crt.parent:recv) wait, and how another thread wakes or
 * interrupts it.
 *
 * A worker thread creates one crt_tctx, makes it current with
 * crt_tctx_enter, and keeps it until it exits. Waits happen on the owning
 * thread only; crt_tctx_signal and crt_tctx_interrupt may be called from any
 * thread.
 */
#ifndef CRT_TCTX_H
#define CRT_TCTX_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct crt_tctx {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int signalled;          /* a waker's event (under mu) */
  atomic_int interrupted; /* crt_tctx_interrupt was called */
  void *ud;               /* for the owner (the pool's worker struct) */
} crt_tctx;

int crt_tctx_init(crt_tctx *c);
void crt_tctx_destroy(crt_tctx *c);

/* The calling thread's context, or NULL on a loop thread. */
crt_tctx *crt_tctx_current(void);
void crt_tctx_enter(crt_tctx *c); /* NULL to leave */

/* Wait until signalled, interrupted, or `seconds` passed (< 0: no limit).
 * Returns 1 if signalled, 0 on time-out, -1 if interrupted (the flag stays
 * set until crt_tctx_clear_interrupt). The signal is consumed. */
int crt_tctx_wait(crt_tctx *c, double seconds);
/* Wake the owner's current or next wait. */
void crt_tctx_signal(crt_tctx *c);
/* Make the owner's waits return -1 until cleared (cancellation). */
void crt_tctx_interrupt(crt_tctx *c);
void crt_tctx_clear_interrupt(crt_tctx *c);
static inline int crt_tctx_interrupted(crt_tctx *c) { return atomic_load(&c->interrupted); }

#endif
