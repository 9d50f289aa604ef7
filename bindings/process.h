/*
 * process.h - the Lua face of child crt processes: crt.process.spawn and
 * crt.process.pool (bindings/process.c), and what process.c shares with
 * crt.parent in a child (bindings/process_child.c): sending and receiving
 * on an endpoint of the process engine (runtime/proc.h). The entry point of
 * a child, crt_child_main, is declared in runtime/include/crt_child.h.
 * See docs/processes.md.
 *
 * Loop thread only.
 */
#ifndef CRT_PROCESS_H
#define CRT_PROCESS_H

#include <lua.h>

#include "proc.h"

/* The codec flags of every value a child or a parent receives. */
#define CRT_PROCESS_CODEC_FLAGS (CRT_CODEC_FUNCTIONS | CRT_CODEC_NOCHANS)

/* Add spawn and pool to crt.process (creating the table when absent) in the
 * crt table at the top of L's stack. */
void crt_open_process(lua_State *L, crt_runtime *rt);

/* The methods on an endpoint (child:send or crt.parent:send, ...), with the
 * endpoint's own names in errors. send(v) and recv() are the Lua methods;
 * _sendv(what, argbase, results, ...) is the pool's (any number of values,
 * errors worded by the caller). */
int crt_process_send(lua_State *L, crt_proc_ep *ep);
int crt_process_sendv(lua_State *L, crt_proc_ep *ep);
int crt_process_recv(lua_State *L, crt_proc_ep *ep);

/* Replace `old` by `repl` in the string at the top of L (codec error
 * messages about results). */
void crt_process_gsub_top(lua_State *L, const char *old, const char *repl);

#endif
