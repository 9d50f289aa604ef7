/*
 * module.c - the one source of crt.so (require "crt" from a stock lua5.4)
 * and of libcrt.so (for C hosts). Both link every object of the library;
 * luaopen_crt and the rest of crt.h live there (bindings/crt.c,
 * runtime/rt.c). This anchor (not exported) names the module's entry point.
 *
 * Loop thread: the thread of the state that required crt.
 */
#include "crt.h"

int (*const crt_module_anchor)(lua_State *L) = luaopen_crt;
