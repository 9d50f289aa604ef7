/*
 * fncache.h - the thread engine's function cache: a Lua function of the main
 * state is dumped to bytecode once per identity (and blobs are shared by
 * identical bytecode, so closures created afresh in a loop still hit a
 * worker's cache of loaded functions), and its upvalues are classified once
 * per job (the globals, the crt table, itself, or a value to copy).
 *
 * Loop thread only, on the main state of one runtime: the caches live in
 * that state's registry (weak tables). Nothing here raises a Lua error of
 * its own: functions return 0 or a negative code with a message (Lua's own
 * memory errors aside, as with any value moved on a Lua stack).
 */
#ifndef CRT_FNCACHE_H
#define CRT_FNCACHE_H

#include <lua.h>

#include "pool.h"

/* Per runtime: the last function sent, pinned by last_ref, whose entry is
 * found without a table lookup (a loop of runs sends the same function). */
typedef struct crt_fncache {
  const void *last_fn;
  struct crt_fnentry *last;
  int last_ref;
} crt_fncache;

/* A function prepared for jobs. fn NULL: a C function, which travels in the
 * job message itself. Otherwise kinds[i] (CRT_UPV_*) says how a worker fills
 * upvalue i + 1, and nvals values (the CRT_UPV_VALUE upvalues) were pushed. */
typedef struct crt_fnprep {
  crt_fnblob *fn;
  int nups, nvals;
  unsigned char kinds[256];
} crt_fnprep;

/* Create the registry caches of L. */
void crt_fncache_init(lua_State *L, crt_fncache *c);
/* Forget the pinned last function (runtime shutdown). */
void crt_fncache_clear(lua_State *L, crt_fncache *c);

/* Prepare the function at stack index f: fills fp and pushes the values to
 * send for it (its VALUE upvalues, or the function itself when it is a C
 * function). Returns 0, or -1 with *err set to a message (nothing pushed):
 * "crt.thread: cannot dump the function", "crt.thread: not enough memory",
 * "stack overflow (crt.thread: too many upvalues)". */
int crt_fncache_prepare(lua_State *L, crt_fncache *c, int f, crt_fnprep *fp, const char **err);

/* Give a job the prepared function (a reference to the blob and a copy of
 * the upvalue kinds). Returns 0, or -1 when out of memory. */
int crt_fncache_set_job(crt_job *j, const crt_fnprep *fp);

#endif
