/*
 * lib.h - the open functions of the bindings that bindings/crt.c calls to
 * assemble the crt table (the others are declared in the header of their
 * area in bindings/: channel.h, io.h, process.h, thread.h).
 *
 * Loop thread only (the state that owns the runtime).
 */
#ifndef CRT_LIB_H
#define CRT_LIB_H

#include <lua.h>

struct crt_runtime;

/* Push the whole crt table for rt's state (L is rt's main state) and keep
 * it in the registry as "crt.lib". Raises on a memory error. */
int crt_open_lib(lua_State *L, struct crt_runtime *rt);

/* Tasks and timers (bindings/task.c): with the runtime as a light userdata
 * at the top (popped), add crt.spawn, crt.sleep, ..., crt.Cancelled to the
 * table below it. */
int crt_open_task(lua_State *L);

/* The crt.codec table (encode, decode, register) pushed on L
 * (bindings/codec.c); also opened in thread workers' states. */
int crt_open_codec(lua_State *L);

/* crt.pid (bindings/crt.c), also in thread workers' crt table. */
int crt_l_pid(lua_State *L);

#endif
