/*
 * select.h - select over several channels (the engine of crt.select): the
 * first case that can complete wins (in case order); otherwise the calling
 * task or thread waits on all of them, with an optional timeout.
 *
 * Runs on the thread that owns L; status codes are those of chan.h, and
 * nothing here raises a Lua error.
 */
#ifndef CRT_SELECT_H
#define CRT_SELECT_H

#include <lua.h>

#include "chan.h"

typedef struct crt_select crt_select;

/* One case, built by the binding: receive from ch, or send the value at
 * stack index vidx of L (which must stay there until the select ends). */
typedef struct crt_select_case {
  crt_chan *ch; /* kept alive by the caller (its proxy on the stack) */
  int op;       /* CRT_CHAN_OP_RECV or CRT_CHAN_OP_SEND */
  int vidx;
} crt_select_case;

/*
 * Start a select over n >= 0 cases; timeout < 0: none, 0: do not wait.
 * `what` prefixes the codec's message for a value that cannot be sent.
 * Returns
 *   CRT_CHAN_OK       case *index completed: one value pushed (what was
 *                     received, nil for a send or a closed channel);
 *   CRT_CHAN_CLOSED   the channel of send case *index is closed;
 *   CRT_CHAN_TIMEOUT  nothing could complete and timeout is 0 (or the
 *                     thread already waited out a select with no case);
 *   CRT_CHAN_EMPTY    it would wait and the caller cannot (neither a task
 *                     nor a thread context calls);
 *   CRT_CHAN_WAIT     *wait (NULL when n == 0) is queued: return
 *                     crt_select_wait(L, *wait, timeout, k);
 *   CRT_CHAN_ERR, CRT_CHAN_ENOMEM.
 */
int crt_select_start(lua_State *L, const crt_select_case *cases, int n, double timeout,
                     const char *what, crt_select **wait, int *index);

/* Wait for a started select. A task is parked with continuation k (which
 * calls crt_select_finish(L, (crt_select *)ctx, ...)): this does not return.
 * A thread blocks, then returns CRT_CHAN_OK (call k yourself),
 * CRT_CHAN_TIMEOUT or CRT_CHAN_CANCELLED (sel was freed in both). */
int crt_select_wait(lua_State *L, crt_select *sel, double timeout, lua_KFunction k);

/* The outcome of a select that waited (frees sel): as crt_select_start's
 * CRT_CHAN_OK, CRT_CHAN_CLOSED and CRT_CHAN_TIMEOUT (the task's deadline
 * passed; nothing pushed), or CRT_CHAN_ERR (a received value could not be
 * decoded: message pushed). */
int crt_select_finish(lua_State *L, crt_select *sel, int *index);

#endif
