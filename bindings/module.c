/*
 * module.c - the entry point of crt.so for require "crt" from a stock
 * lua5.4. luaopen_crt lives in the library (bindings/crt.c); this anchor
 * makes the linker keep it in the module.
 *
 * Loop thread: the thread of the state that required crt.
 */
#include "crt.h"

CRT_API int (*const crt_module_anchor)(lua_State *L) = luaopen_crt;
