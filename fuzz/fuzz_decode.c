/*
 * fuzz/fuzz_decode.c - libFuzzer target for crt_codec_decode (runtime/codec.c).
 *
 * Input: one mode byte, then the message. Mode bit 0 set: decode with
 * CRT_CODEC_FUNCTIONS; bit 1: with CRT_CODEC_NOCHANS. Single-threaded; one
 * Lua state for the whole run.
 *
 * Function bytecode. Lua does not verify bytecode: lua_load on crafted
 * bytecode can allocate without bound, and calling the loaded function can
 * crash. That is why decoding with functions is for trusted input only (our
 * own encoders; see codec.c). So that the fuzzer still covers everything
 * around bytecode (upvalue counts, shared upvalues, _ENV, references to and
 * from functions, cycles through upvalues), codec.c is built here with
 * CRT_CODEC_FUZZING and asks crt_codec_fuzz_bytecode_ok below before loading:
 * only the exact bytecode of the functions in fuzz_funcs.h passes. Everything
 * else in the message is fuzzed freely.
 *
 * Oracle: besides "no crash, no sanitizer report", whatever decodes must
 * encode again (or fail only for depth: a decoded graph walked in a different
 * order can be deeper), and that encoding must decode.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "allowlist.h"
#include "fuzz_funcs.h"

int crt_chan_stub_push(lua_State *L, uint64_t id);

static lua_State *L;
static int verbose; /* FUZZ_VERBOSE=1: print each decode's outcome */

/* Allocation cap: the codec's own bounds keep hostile input far below it. */
static size_t used;
static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (!ptr)
    osize = 0;
  if (nsize == 0) {
    free(ptr);
    used -= osize;
    return NULL;
  }
  if (nsize > osize && used - osize + nsize > ((size_t)256 << 20))
    return NULL;
  void *p = realloc(ptr, nsize);
  if (p)
    used = used - osize + nsize;
  return p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  verbose = getenv("FUZZ_VERBOSE") != NULL;
  L = lua_newstate(alloc, NULL);
  luaL_openlibs(L);
  /* A registered metatable, for TABLEMT. */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "Point");
  lua_pushstring(L, "Point");
  lua_rawset(L, -3);
  lua_setfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG);
  /* Make the stub channels exist (ids 1..4). */
  crt_chan_stub_push(L, 1);
  lua_pop(L, 1);
  for (int i = 0; fuzz_funcs[i]; i++) {
    if (luaL_loadbufferx(L, fuzz_funcs[i], strlen(fuzz_funcs[i]), FUZZ_CHUNKNAME, "t") ||
        lua_pcall(L, 0, 1, 0))
      abort();
    if (lua_type(L, -1) == LUA_TTABLE) {
      for (int k = 1; lua_rawgeti(L, -1, k) == LUA_TFUNCTION; k++) {
        fuzz_allow(L, -1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    } else {
      fuzz_allow(L, -1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int flags = ((data[0] & 1) ? CRT_CODEC_FUNCTIONS : 0) | ((data[0] & 2) ? CRT_CODEC_NOCHANS : 0);
  /* An exact-size copy, so that any over-read is caught. */
  char *msg = malloc(size - 1 ? size - 1 : 1);
  memcpy(msg, data + 1, size - 1);
  int n = crt_codec_decode(L, msg, size - 1, flags);
  free(msg);
  if (verbose)
    fprintf(stderr, "decode: %d %s\n", n, n < 0 ? lua_tostring(L, -1) : "");
  if (n >= 0) {
    crt_buf b;
    crt_buf_init(&b);
    int top = lua_gettop(L);
    if (crt_codec_encode(L, top - n + 1, n, &b, flags & CRT_CODEC_NOCHANS, "fuzz", 0) != 0) {
      const char *e = lua_tostring(L, -1);
      if (!e || !strstr(e, "too deep")) {
        fprintf(stderr, "re-encode failed: %s\n", e ? e : "?");
        abort();
      }
    } else {
      int m = crt_codec_decode(L, b.data, b.len, flags);
      if (m != n) {
        fprintf(stderr, "re-decode failed: %s\n", m < 0 ? lua_tostring(L, -1) : "count");
        abort();
      }
    }
    crt_buf_free(&b);
  }
  lua_settop(L, 0);
  return 0;
}
