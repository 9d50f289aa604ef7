/*
 * fuzz/gen_corpus.c - writes the seed corpus of fuzz_decode (fuzz/corpus/fuzz_decode/):
 * one small file per value below, encoded by the real encoder and prefixed
 * with the fuzz target's mode byte (1 = functions allowed).
 *
 *   gen_fuzz_corpus fuzz/corpus/fuzz_decode
 *
 * Single-threaded, run by hand when the format changes.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "codec.h"
#include "fuzz_funcs.h"

int crt_chan_stub_push(lua_State *L, uint64_t id);

static const char *const values[] = {
    "return nil",
    "return true, false, 0, -1, math.maxinteger, math.mininteger",
    "return 0.5, -0.0, 1/0, -1/0, 0/0",
    "return 'a\\0b', ''",
    "return {1, 2, nil, 4, x = 'y', [true] = {}, [2.5] = 'f'}",
    "local c = {} c.self = c c[1] = {c, c} return c",
    "local s = {} return {s, s, [s] = s}",
    "local t = {} for i = 1, 200 do t['k' .. i] = i end return t",
    "return setmetatable({x = 1, y = 2}, POINT)",
    "return CHAN, {ch = CHAN}",
    "return print, string.format, math.floor",
    "local t = {} local top = t for i = 1, 30 do t[1] = {} t = t[1] end return top",
    NULL};

static int save(const char *dir, int k, int mode, const crt_buf *b) {
  char path[512];
  snprintf(path, sizeof path, "%s/seed_%02d", dir, k);
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  fputc(mode, f);
  fwrite(b->data, 1, b->len, f);
  return fclose(f);
}

static int emit(lua_State *L, const char *dir, int k, int mode, int base) {
  crt_buf b;
  crt_buf_init(&b);
  int n = lua_gettop(L) - base;
  if (crt_codec_encode(L, base + 1, n, &b, 0, "gen_corpus", 0) != 0) {
    fprintf(stderr, "seed %d: %s\n", k, lua_tostring(L, -1));
    return -1;
  }
  int r = save(dir, k, mode, &b);
  crt_buf_free(&b);
  lua_settop(L, base);
  return r;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_corpus DIR\n");
    return 2;
  }
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L); /* the codec's metatable registry: Point */
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "POINT");
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "Point");
  lua_pushstring(L, "Point");
  lua_rawset(L, -3);
  lua_setfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG);
  crt_chan_stub_push(L, 1);
  lua_setglobal(L, "CHAN");
  int k = 0;
  for (int i = 0; values[i]; i++, k++)
    if (luaL_dostring(L, values[i]) != LUA_OK ||
        emit(L, argv[1], k, strstr(values[i], "print") != NULL, 0) != 0)
      return 1;
  /* Each known function alone, then all of them together in one message
   * (shared upvalues, cycles through upvalues). */
  for (int i = 0; fuzz_funcs[i]; i++, k++) {
    if (luaL_loadbufferx(L, fuzz_funcs[i], strlen(fuzz_funcs[i]), FUZZ_CHUNKNAME, "t") ||
        lua_pcall(L, 0, 1, 0) || emit(L, argv[1], k, 1, 0) != 0)
      return 1;
  }
  for (int i = 0; fuzz_funcs[i]; i++)
    if (luaL_loadbufferx(L, fuzz_funcs[i], strlen(fuzz_funcs[i]), FUZZ_CHUNKNAME, "t") ||
        lua_pcall(L, 0, 1, 0))
      return 1;
  if (emit(L, argv[1], k++, 1, 0) != 0)
    return 1;
  lua_close(L);
  printf("%d seeds\n", k);
  return 0;
}
