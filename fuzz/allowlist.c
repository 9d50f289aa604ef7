/*
 * fuzz/allowlist.c - the bytecode the fuzz targets accept when they decode
 * with functions allowed: Lua does not verify bytecode, so codec.c built with
 * CRT_CODEC_FUZZING asks crt_codec_fuzz_bytecode_ok, and only the exact dumps
 * of known functions (fuzz_funcs.h) pass. Single-threaded (a fuzz target).
 */
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "allowlist.h"
#include "buf.h"

#define MAXBLOBS 16
static struct {
  char *p;
  size_t n;
} blobs[MAXBLOBS];
static int nblobs;

int crt_codec_fuzz_bytecode_ok(const char *p, size_t n) {
  for (int i = 0; i < nblobs; i++)
    if (blobs[i].n == n && memcmp(blobs[i].p, p, n) == 0)
      return 1;
  return 0;
}

static int writer(lua_State *l, const void *p, size_t n, void *ud) {
  (void)l;
  return crt_buf_append(ud, p, n) != 0;
}

void fuzz_allow(lua_State *l, int idx) {
  crt_buf b;
  crt_buf_init(&b);
  lua_pushvalue(l, idx);
  if (nblobs == MAXBLOBS || lua_dump(l, writer, &b, 0) != 0)
    abort();
  lua_pop(l, 1);
  blobs[nblobs].p = b.data;
  blobs[nblobs].n = b.len;
  nblobs++;
}
