/*
 * thread.h - the Lua bindings of threads: crt.thread in the main state
 * (bindings/thread.c) and the crt table of worker states (bindings/worker.c).
 */
#ifndef CRT_THREAD_H
#define CRT_THREAD_H

#include <lua.h>

struct crt_runtime;

/* Set crt.thread on the crt table at the top of L's stack (the main state of
 * rt; loop thread). Registers rt's shutdown hook for its pools. */
int crt_open_thread(lua_State *L, struct crt_runtime *rt);

/* Worker thread: install the worker-side crt table (global crt and
 * require "crt") in a fresh worker state. A crt_pool_open_fn. */
int crt_open_worker(lua_State *L, int id);

#endif
