/*
 * fuzz/allowlist.h - allow the bytecode of the function at idx in decoded
 * input (see allowlist.c). The codec asks crt_codec_fuzz_bytecode_ok.
 */
#ifndef CRT_FUZZ_ALLOWLIST_H
#define CRT_FUZZ_ALLOWLIST_H

#include <lua.h>
#include <stddef.h>

void fuzz_allow(lua_State *l, int idx);
int crt_codec_fuzz_bytecode_ok(const char *p, size_t n);

#endif
