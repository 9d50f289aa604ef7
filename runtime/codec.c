/*
 * codec.c - the value codec: deep copies of Lua values as self-contained byte
 * strings, so that values can cross from one Lua state to another (threads)
 * or to another process.
 *
 * Threads: any thread may call crt_codec_encode/decode on the Lua state it
 * owns. The codec keeps no global state; per-state caches live in that
 * state's registry. Channels are the only shared objects (chan.h).
 *
 * Format, version 1. All multi-byte numbers are little-endian; "varint" is an
 * unsigned LEB128 of at most 10 bytes (7 bits per byte, low bits first).
 *
 *   message := version:u8(=1) flags:u8 count:varint [nobjects:varint] value*count
 *              flags bit 0 (REFS): the message contains back references; then
 *              nobjects (the number of tables and Lua functions in the message)
 *              follows, and the decoder keeps every object in a refs array.
 *              Without REFS the decoder keeps no such array.
 *   value   := NIL | FALSE | TRUE
 *            | INT   zigzag:varint              (lua_Integer, exact)
 *            | FLOAT bits:u64                   (IEEE 754 double: NaN payloads, -0.0)
 *            | STR   len:varint bytes           (binary-safe)
 *            | TABLE narr:varint nhash:varint value*narr (key value)*nhash
 *            | TABLEMT len:varint name  narr:varint nhash:varint ...as TABLE
 *                                           (metatable registered under name)
 *            | REF   index:varint               (the index-th object, 0-based, in
 *                                           order of first appearance)
 *            | FUNC  len:varint bytecode nups:u8 upvalue*nups
 *                                           (lua_dump with debug info)
 *            | CFUNC len:varint name            (standard library C function,
 *                                           e.g. "string.format")
 *            | CHAN  id:u64                     (a shared channel, by reference)
 *            | CRT                              (the crt table: the receiver's own)
 *   upvalue := value | ENV                      (bind to the receiving globals)
 *            | UPREF index:varint n:u8          (the same upvalue as upvalue n of
 *                                           function object index: shared upvalues
 *                                           stay shared)
 *
 * Tags are one byte each, numbered as in the enum below. Array items 1..narr
 * are the table's border (lua_rawlen) and may hold NIL for holes. Tables and
 * functions are numbered when they first appear, before their contents, so
 * that cycles can refer back to an object being built.
 *
 * What is copied how. Table contents are read raw (no __pairs, __index or
 * __len); a table with a metatable needs it registered (crt.codec.register)
 * in both states. A function's upvalue named _ENV, or holding the sender's
 * globals table, is not copied but bound to the receiver's globals (also
 * when a script gave a function its own _ENV table: that table is not sent).
 * The crt table itself (registry "crt.lib": what require "crt" returns) is
 * not copied either: it stands for the receiver's own crt table, so a
 * function from a file that did `local crt = require "crt"` can be sent.
 * Standard C functions travel by name; decode treats them as functions, so
 * they too need CRT_CODEC_FUNCTIONS. A channel is made shared and sent by id;
 * the crt_buf retains it until the buffer is reset, a string made from the
 * bytes does not.
 *
 * Error paths name the value as Lua code would reach it: .name for
 * identifier keys, [3], ["odd key"], [2.5], [true], [<table>] for other
 * keys, "upvalue 'x'" for upvalues, and {key} when the key itself is what
 * cannot be copied (".a{key}[1]": item 1 of a table used as a key in .a).
 *
 * Safety of decoding. Every count and length is checked against the bytes
 * that remain before anything is allocated, counting the bytes that the open
 * tables still need, so a hostile message cannot make the decoder allocate
 * more than a small constant times its own size. Nesting is limited to
 * CRT_CODEC_MAXDEPTH on both sides. Function bytecode is the exception: Lua
 * does not verify bytecode, and lua_load (or calling the loaded function) on
 * crafted bytecode can crash the process or allocate without bound. So
 * CRT_CODEC_FUNCTIONS (crt.codec.decode's opts.functions) must only be used
 * for input that a crt encoder produced: our own threads and child
 * processes. The fuzz target (fuzz/fuzz_decode.c) fuzzes everything else
 * with functions allowed by accepting only known-good bytecode blobs, which
 * it does through the CRT_CODEC_FUZZING hook below.
 */
#include "codec.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"

_Static_assert(sizeof(lua_Number) == 8, "the codec writes lua_Number as an IEEE double");
_Static_assert(sizeof(lua_Integer) == 8, "the codec writes 64-bit integers");

#ifdef CRT_CODEC_FUZZING
/* Defined by the fuzz target: accept only bytecode it knows to be good. */
int crt_codec_fuzz_bytecode_ok(const char *p, size_t n);
#endif

#define VERSION 1
#define STR(x) #x
#define XSTR(x) STR(x)
#define TOODEEP "too deep: more than " XSTR(CRT_CODEC_MAXDEPTH) " levels"
#define F_REFS 1

enum {
  T_NIL,
  T_FALSE,
  T_TRUE,
  T_INT,
  T_FLOAT,
  T_STR,
  T_TABLE,
  T_TABLEMT,
  T_REF,
  T_FUNC,
  T_CFUNC,
  T_CHAN,
  T_ENV,
  T_UPREF,
  T_CRT,
};

/* Registry key of the per-state map between standard C functions and their
 * names ("string.format" <-> function), built on first use. */
#define CFREG "crt.codec.cfunctions"

/* The C functions that the codec sends by name: the base library and these
 * standard library tables, as the state loaded them (package.loaded). */
static const char *const basefuncs[] = {
    "assert",   "collectgarbage", "dofile",  "error",  "getmetatable", "ipairs",   "load",
    "loadfile", "next",           "pairs",   "pcall",  "print",        "rawequal", "rawget",
    "rawlen",   "rawset",         "require", "select", "setmetatable", "tonumber", "tostring",
    "type",     "warn",           "xpcall",  NULL};
static const char *const libs[] = {"string", "table", "math",      "os",
                                   "io",     "utf8",  "coroutine", NULL};

static void cfadd(lua_State *L, int map, const char *name) {
  /* The function is at the top. A function reachable under two names keeps
   * the first; every name maps to its function. */
  lua_pushvalue(L, -1);
  if (lua_rawget(L, map) == LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_pushstring(L, name);
    lua_rawset(L, map);
  }
  lua_pop(L, 1);
  lua_pushstring(L, name);
  lua_pushvalue(L, -2);
  lua_rawset(L, map);
}

/* Push this state's function <-> name map, building it the first time. May
 * raise (memory); callers run protected. */
static void cfmap(lua_State *L) {
  luaL_checkstack(L, 12, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  if (lua_getfield(L, LUA_REGISTRYINDEX, CFREG) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 256);
  int map = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  for (const char *const *n = basefuncs; *n; n++) {
    lua_pushstring(L, *n);
    if (lua_rawget(L, -2) == LUA_TFUNCTION && lua_iscfunction(L, -1))
      cfadd(L, map, *n);
    lua_pop(L, 1);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  for (const char *const *lib = libs; *lib; lib++) {
    /* Prefer package.loaded: it still holds the library when a script has
     * replaced or removed the global. */
    lua_pushstring(L, *lib);
    if (lua_type(L, -2) != LUA_TTABLE || lua_rawget(L, -2) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_pushstring(L, *lib);
      lua_rawget(L, -3);
    }
    if (lua_type(L, -1) == LUA_TTABLE) {
      int t = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
          lua_pushfstring(L, "%s.%s", *lib, lua_tostring(L, -2));
          lua_insert(L, -2);
          cfadd(L, map, lua_tostring(L, -2));
          lua_remove(L, -2);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, map);
  lua_pushvalue(L, map);
  lua_setfield(L, LUA_REGISTRYINDEX, CFREG);
}

/* ---------------------------------------------------------------- encode */

/* One step of the path to the value being encoded, for error messages. */
enum { S_INDEX, S_KEY, S_KEYSELF, S_UPVAL };
typedef struct seg {
  int kind;
  int idx;          /* S_KEY, S_KEYSELF: stack index of the key */
  lua_Integer i;    /* S_INDEX */
  const char *name; /* S_UPVAL */
} seg;

/* The visited set: object pointer -> its number (tables, Lua functions), or
 * upvalue id -> the function holding it and its index. */
typedef struct slot {
  const void *p;
  uint32_t ref;
  uint32_t aux;
} slot;

#define INLSLOTS 16

typedef struct enc {
  lua_State *L;
  crt_buf *b;
  int flags;
  const char *what;
  int n, argbase, arg;
  size_t hdr; /* offset of the version byte in b */
  uint32_t nobj;
  int hasrefs;
  /* Most messages hold at most one table, so the set starts as this single
   * slot and becomes a hash table (inline, then malloc'd) at the second
   * object: no allocation and no clearing for the common case. */
  int nfirst;
  slot first;
  slot *set;
  size_t setcap, setn;
  const void *globals;
  const void *crtlib; /* this state's crt table; &crtlib_none when it has none */
  int mtslot, cfslot; /* stack slots for the registry tables, nil until needed */
  int plen;
  seg path[CRT_CODEC_MAXDEPTH + 2];
  slot inl[INLSLOTS];
} enc;

static const char *const reserved[] = {"and",   "break", "do",       "else",  "elseif", "end",
                                       "false", "for",   "function", "goto",  "if",     "in",
                                       "local", "nil",   "not",      "or",    "repeat", "return",
                                       "then",  "true",  "until",    "while", NULL};

static int isident(const char *s, size_t n) {
  if (n == 0 || n > 64 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
    return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z')))
      return 0;
  }
  for (const char *const *r = reserved; *r; r++)
    if (strlen(*r) == n && memcmp(*r, s, n) == 0)
      return 0;
  return 1;
}

static void addquoted(luaL_Buffer *B, const char *s, size_t n) {
  size_t lim = n > 40 ? 37 : n;
  luaL_addchar(B, '"');
  for (size_t i = 0; i < lim; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      luaL_addchar(B, '\\');
      luaL_addchar(B, (char)c);
    } else if (c < 32 || c == 127) {
      char tmp[8];
      snprintf(tmp, sizeof tmp, "\\%d", c);
      luaL_addstring(B, tmp);
    } else {
      luaL_addchar(B, (char)c);
    }
  }
  if (lim < n)
    luaL_addstring(B, "...");
  luaL_addchar(B, '"');
}

static void addkey(lua_State *L, luaL_Buffer *B, int idx) {
  char tmp[64];
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (isident(s, n)) {
      luaL_addchar(B, '.');
      luaL_addlstring(B, s, n);
    } else {
      luaL_addchar(B, '[');
      addquoted(B, s, n);
      luaL_addchar(B, ']');
    }
    return;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(tmp, sizeof tmp, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)lua_tointeger(L, idx));
    else
      snprintf(tmp, sizeof tmp, "[%.14g]", (double)lua_tonumber(L, idx));
    break;
  case LUA_TBOOLEAN:
    snprintf(tmp, sizeof tmp, "[%s]", lua_toboolean(L, idx) ? "true" : "false");
    break;
  default: snprintf(tmp, sizeof tmp, "[<%s>]", luaL_typename(L, idx)); break;
  }
  luaL_addstring(B, tmp);
}

static void addseg(enc *e, luaL_Buffer *B, const seg *s, int first) {
  lua_State *L = e->L;
  char tmp[48];
  switch (s->kind) {
  case S_INDEX:
    snprintf(tmp, sizeof tmp, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)s->i);
    luaL_addstring(B, tmp);
    break;
  case S_KEY: addkey(L, B, s->idx); break;
  case S_KEYSELF: luaL_addstring(B, "{key}"); break;
  case S_UPVAL:
    if (!first)
      luaL_addchar(B, ' ');
    luaL_addstring(B, "upvalue '");
    luaL_addstring(B, s->name ? s->name : "?");
    luaL_addchar(B, '\'');
    break;
  }
}

/* Raise "<what> argument #k <path> (<desc>)". Runs inside the protected
 * call, so it may allocate and raise. */
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void
efail(enc *e, const char *desc) {
  lua_State *L = e->L;
  luaL_Buffer B;
  char tmp[32];
  /* The message may need a few slots on a stack that deep recursion used. */
  luaL_checkstack(L, 8, "codec error"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  luaL_buffinit(L, &B);
  luaL_addstring(&B, e->what);
  if (e->n == 1 && e->argbase == 0) {
    luaL_addstring(&B, " value");
  } else {
    snprintf(tmp, sizeof tmp, " argument #%d", e->arg + e->argbase);
    luaL_addstring(&B, tmp);
  }
  if (e->plen > 0) {
    luaL_addchar(&B, ' ');
    /* A path as deep as the depth limit is unreadable: keep both ends. */
    for (int i = 0; i < e->plen; i++) {
      if (e->plen > 16 && i == 8) {
        luaL_addstring(&B, "...");
        i = e->plen - 8;
      }
      addseg(e, &B, &e->path[i], i == 0);
    }
  }
  luaL_addstring(&B, " (");
  luaL_addstring(&B, desc);
  luaL_addchar(&B, ')');
  luaL_pushresult(&B);
  lua_error(L); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  abort();      /* not reached: lua_error does not return */
}

static void need(enc *e, size_t n) {
  if (e->b->cap - e->b->len < n && crt_buf_reserve(e->b, n) != 0)
    efail(e, "out of memory");
}

static inline unsigned char *wp(enc *e) { return (unsigned char *)e->b->data + e->b->len; }

static inline void put1(enc *e, unsigned c) {
  need(e, 1);
  e->b->data[e->b->len++] = (char)c;
}

static inline size_t varw(uint64_t v) {
  size_t w = 1;
  while (v >= 0x80) {
    v >>= 7;
    w++;
  }
  return w;
}

static inline size_t wvar(unsigned char *p, uint64_t v) {
  size_t i = 0;
  while (v >= 0x80) {
    p[i++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[i++] = (unsigned char)v;
  return i;
}

/* Tag followed by a varint. */
static inline void puttv(enc *e, unsigned tag, uint64_t v) {
  need(e, 11);
  unsigned char *p = wp(e);
  p[0] = (unsigned char)tag;
  e->b->len += 1 + wvar(p + 1, v);
}

static inline void put64(enc *e, unsigned tag, uint64_t v) {
  need(e, 9);
  unsigned char *p = wp(e);
  p[0] = (unsigned char)tag;
  for (int i = 0; i < 8; i++)
    p[1 + i] = (unsigned char)(v >> (8 * i));
  e->b->len += 9;
}

static void putstr(enc *e, unsigned tag, const char *s, size_t n) {
  need(e, 11 + n);
  unsigned char *p = wp(e);
  p[0] = (unsigned char)tag;
  size_t w = 1 + wvar(p + 1, n);
  memcpy(p + w, s, n);
  e->b->len += w + n;
}

/* Store v as a varint at pos, where one placeholder byte was written: counts
 * and lengths are known only after their contents are written. Values of
 * 128 and more shift the bytes after pos, once per large table. */
static void patch(enc *e, size_t pos, uint64_t v) {
  unsigned char *d = (unsigned char *)e->b->data;
  if (v < 0x80) {
    d[pos] = (unsigned char)v;
    return;
  }
  size_t w = varw(v);
  need(e, w - 1);
  d = (unsigned char *)e->b->data;
  memmove(d + pos + w, d + pos + 1, e->b->len - pos - 1);
  wvar(d + pos, v);
  e->b->len += w - 1;
}

static inline size_t hashp(const void *p, size_t cap) {
  uint64_t h = (uint64_t)(uintptr_t)p * UINT64_C(0x9E3779B97F4A7C15);
  return (size_t)(h >> 32) & (cap - 1);
}

static slot *lookup(enc *e, const void *p) {
  if (e->setcap == 0)
    return (e->nfirst && e->first.p == p) ? &e->first : NULL;
  for (size_t i = hashp(p, e->setcap);; i = (i + 1) & (e->setcap - 1)) {
    if (e->set[i].p == p)
      return &e->set[i];
    if (e->set[i].p == NULL)
      return NULL;
  }
}

static void insert(slot *set, size_t cap, slot s) {
  size_t i = hashp(s.p, cap);
  while (set[i].p)
    i = (i + 1) & (cap - 1);
  set[i] = s;
}

static void addobj(enc *e, const void *p, uint32_t ref, uint32_t aux) {
  slot s = {p, ref, aux};
  if (e->setcap == 0) {
    if (!e->nfirst) {
      e->first = s;
      e->nfirst = 1;
      return;
    }
    memset(e->inl, 0, sizeof e->inl);
    e->set = e->inl;
    e->setcap = INLSLOTS;
    insert(e->set, e->setcap, e->first);
    e->setn = 1;
  }
  if ((e->setn + 1) * 2 > e->setcap) {
    size_t cap = e->setcap * 2;
    slot *set = calloc(cap, sizeof *set);
    if (!set)
      efail(e, "out of memory");
    for (size_t i = 0; i < e->setcap; i++)
      if (e->set[i].p)
        insert(set, cap, e->set[i]);
    if (e->set != e->inl)
      free(e->set);
    e->set = set;
    e->setcap = cap;
  }
  insert(e->set, e->setcap, s);
  e->setn++;
}

static void putref(enc *e, uint32_t ref) {
  e->hasrefs = 1;
  puttv(e, T_REF, ref);
}

static void encv(enc *e, int idx, int depth);

static void enct(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, idx);
  slot *s = lookup(e, p);
  if (s) {
    putref(e, s->ref);
    return;
  }
  if (depth > CRT_CODEC_MAXDEPTH)
    efail(e, TOODEEP);
  luaL_checkstack(L, 6, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  addobj(e, p, e->nobj++, 0);
  if (lua_getmetatable(L, idx)) {
    if (lua_isnil(L, e->mtslot)) {
      lua_getfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG);
      lua_replace(L, e->mtslot);
    }
    if (lua_type(L, e->mtslot) != LUA_TTABLE || lua_rawget(L, e->mtslot) != LUA_TSTRING) {
      lua_pop(L, 1);
      efail(e, "table with unregistered metatable");
    }
    size_t n;
    const char *name = lua_tolstring(L, -1, &n);
    putstr(e, T_TABLEMT, name, n);
    lua_pop(L, 1);
    need(e, 11);
  } else {
    need(e, 12);
    *wp(e) = T_TABLE;
    e->b->len++;
  }
  lua_Unsigned narr = lua_rawlen(L, idx);
  e->b->len += wvar(wp(e), narr);
  size_t hpos = e->b->len;
  e->b->data[e->b->len++] = 0; /* nhash, patched below */

  /* One traversal with lua_next writes the array items 1..narr and then the
   * other pairs. lua_next yields the array part first, in order, so for a
   * plain list the items arrive as 1, 2, 3...; at the first gap (a hole, or
   * items kept in the hash part) the rest of 1..narr is written with
   * lua_rawgeti, and those keys are skipped when they come later. */
  seg *sg = &e->path[e->plen++];
  int top = lua_gettop(L);
  lua_Unsigned next = 1; /* the next array item to write; narr + 1 when done */
  uint64_t nhash = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (narr) {
      int isint = lua_isinteger(L, top + 1);
      lua_Integer k = isint ? lua_tointeger(L, top + 1) : 0;
      if (isint && (lua_Unsigned)k == next && next <= narr) {
        sg->kind = S_INDEX;
        sg->i = k;
        encv(e, top + 2, depth);
        next++;
        lua_settop(L, top + 1);
        continue;
      }
      if (next <= narr) {
        sg->kind = S_INDEX;
        for (; next <= narr; next++) {
          sg->i = (lua_Integer)next;
          lua_rawgeti(L, idx, (lua_Integer)next);
          encv(e, top + 3, depth);
          lua_settop(L, top + 2);
        }
      }
      if (isint && k >= 1 && (lua_Unsigned)k <= narr) {
        lua_settop(L, top + 1);
        continue;
      }
    }
    sg->kind = S_KEYSELF;
    sg->idx = top + 1;
    encv(e, top + 1, depth);
    sg->kind = S_KEY;
    encv(e, top + 2, depth);
    lua_settop(L, top + 1);
    nhash++;
  }
  /* Whatever of 1..narr is still unwritten. lua_next yields item narr (a
   * border is not nil), which either completes the sequence or triggers the
   * catch-up above, so nothing is left in practice; this keeps the array
   * count right whatever the traversal order. */
  sg->kind = S_INDEX;
  for (; next <= narr; next++) {
    sg->i = (lua_Integer)next;
    lua_rawgeti(L, idx, (lua_Integer)next);
    encv(e, top + 1, depth);
    lua_settop(L, top);
  }
  e->plen--;
  patch(e, hpos, nhash);
}

static int dumpw(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return crt_buf_append(((enc *)ud)->b, p, n) != 0;
}

static const char crtlib_none;

/* Is the table at idx this state's crt table (sent by reference)? */
static int iscrtlib(enc *e, int idx) {
  lua_State *L = e->L;
  if (!e->crtlib) {
    lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib");
    e->crtlib = lua_istable(L, -1) ? lua_topointer(L, -1) : &crtlib_none;
    lua_pop(L, 1);
  }
  return lua_topointer(L, idx) == e->crtlib;
}

static int isglobals(enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_type(L, idx) != LUA_TTABLE)
    return 0;
  if (!e->globals) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    e->globals = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  return lua_topointer(L, idx) == e->globals;
}

static void encf(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, idx);
  slot *s = lookup(e, p);
  if (s) {
    putref(e, s->ref);
    return;
  }
  if (depth > CRT_CODEC_MAXDEPTH)
    efail(e, TOODEEP);
  luaL_checkstack(L, 6, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  uint32_t ref = e->nobj++;
  addobj(e, p, ref, 0);

  need(e, 2);
  e->b->data[e->b->len++] = T_FUNC;
  size_t lpos = e->b->len;
  e->b->data[e->b->len++] = 0; /* bytecode length, patched below */
  size_t start = e->b->len;
  lua_pushvalue(L, idx);
  /* strip = 0: keep the source name, line numbers and local names so that
   * errors raised in the receiving state have a useful traceback. */
  int st = lua_dump(L, dumpw, e, 0);
  lua_pop(L, 1);
  if (st != 0)
    efail(e, "out of memory");
  patch(e, lpos, e->b->len - start);

  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  put1(e, ar.nups);

  seg *sg = &e->path[e->plen++];
  sg->kind = S_UPVAL;
  int top = lua_gettop(L);
  for (int i = 1; i <= ar.nups; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    sg->name = name;
    /* _ENV (and any upvalue holding this state's globals, as a function
     * loaded from stripped bytecode has no upvalue names) is not copied: the
     * function runs with the globals of the state that receives it. */
    if ((name && strcmp(name, "_ENV") == 0) || isglobals(e, top + 1)) {
      put1(e, T_ENV);
    } else {
      const void *id = lua_upvalueid(L, idx, i);
      slot *u = id ? lookup(e, id) : NULL;
      if (u) {
        /* An upvalue shared with a function already written (closures of
         * one scope): join them on decode, as they were here. */
        e->hasrefs = 1;
        puttv(e, T_UPREF, u->ref);
        put1(e, u->aux);
      } else {
        if (id)
          addobj(e, id, ref, (uint32_t)i);
        encv(e, top + 1, depth);
      }
    }
    lua_settop(L, top);
  }
  e->plen--;
}

static void encc(enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_isnil(L, e->cfslot)) {
    cfmap(L);
    lua_replace(L, e->cfslot);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->cfslot) != LUA_TSTRING) {
    lua_pop(L, 1);
    efail(e, "C function");
  }
  size_t n;
  const char *name = lua_tolstring(L, -1, &n);
  putstr(e, T_CFUNC, name, n);
  lua_pop(L, 1);
}

static void encchan(enc *e, crt_chan *ch) {
  if (e->flags & CRT_CODEC_NOCHANS)
    efail(e, "channel: channels cannot cross a process boundary");
  uint64_t id;
  luaL_checkstack(e->L, 8, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  if (crt_chan_share(e->L, ch, &id) != 0)
    efail(e, lua_isstring(e->L, -1) ? lua_tostring(e->L, -1) : "channel cannot be shared");
  if (crt_buf_add_chan(e->b, ch) != 0)
    efail(e, "out of memory");
  put64(e, T_CHAN, id);
}

static void encv(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put1(e, T_NIL); break;
  case LUA_TBOOLEAN: put1(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      uint64_t u = (uint64_t)lua_tointeger(L, idx);
      puttv(e, T_INT, (u << 1) ^ (0 - (u >> 63)));
    } else {
      double d = (double)lua_tonumber(L, idx);
      uint64_t u;
      memcpy(&u, &d, 8);
      put64(e, T_FLOAT, u);
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    putstr(e, T_STR, s, n);
    break;
  }
  case LUA_TTABLE:
    if (iscrtlib(e, idx))
      put1(e, T_CRT);
    else
      enct(e, idx, depth + 1);
    break;
  case LUA_TFUNCTION:
    if (lua_iscfunction(L, idx))
      encc(e, idx);
    else
      encf(e, idx, depth + 1);
    break;
  case LUA_TUSERDATA: {
    crt_chan *ch = crt_chan_test(L, idx);
    if (!ch)
      efail(e, "userdata");
    encchan(e, ch);
    break;
  }
  default: efail(e, luaL_typename(L, idx));
  }
}

/* ---------------------------------------------------------------- fast path
 *
 * Most messages between states are a few scalars (job arguments and
 * results) or one flat table of scalars (a record on a channel). For these,
 * crt_codec_encode and crt_codec_decode first try a direct path that writes
 * and reads the same format version 1 as the full codec (byte for byte:
 * tests/c/test_codec.c checks it), without its protected call, path
 * tracking or visited set. Anything else (nested tables, metatables,
 * functions, channels, userdata, the same table twice, a malformed message)
 * makes the fast path give up with nothing written or pushed, and the full
 * codec decides.
 *
 * Encoding this way never raises: it reads values (lua_next, lua_rawgeti on
 * a checked stack allocate nothing) and writes to the crt_buf (malloc).
 * Decoding strings and tables allocates in the Lua state, which raises on a
 * memory error; so the decoder's fast path handles those only under
 * CRT_CODEC_MAYRAISE (the caller runs protected), and otherwise only nil,
 * booleans and numbers. */

/* A scalar value's encoded size bound, or 0 when it is not a scalar. */
static inline size_t fsize(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TBOOLEAN: return 1;
  case LUA_TNUMBER: return 11;
  case LUA_TSTRING: return 11 + lua_rawlen(L, idx);
  default: return 0;
  }
}

static inline unsigned char *fput(lua_State *L, int idx, unsigned char *p) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: *p++ = T_NIL; break;
  case LUA_TBOOLEAN: *p++ = lua_toboolean(L, idx) ? T_TRUE : T_FALSE; break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      uint64_t u = (uint64_t)lua_tointeger(L, idx);
      *p++ = T_INT;
      p += wvar(p, (u << 1) ^ (0 - (u >> 63)));
    } else {
      double d = (double)lua_tonumber(L, idx);
      uint64_t u;
      memcpy(&u, &d, 8);
      *p++ = T_FLOAT;
      for (int k = 0; k < 8; k++)
        *p++ = (unsigned char)(u >> (8 * k));
    }
    break;
  default: { /* string (fsize said so) */
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    *p++ = T_STR;
    p += wvar(p, (uint64_t)len);
    memcpy(p, s, len);
    p += len;
  }
  }
  return p;
}

/* The flat table at idx (absolute): its encoded size bound and, through
 * narr/nhash, its counts; 0 when it is not flat (a metatable, a table or
 * other non-scalar key or value). Needs 3 stack slots. */
/* Is the key at -2 an integer of the array part 1..na (already written)? */
static int in_array(lua_State *L, lua_Unsigned na) {
  if (!lua_isinteger(L, -2))
    return 0;
  lua_Integer k = lua_tointeger(L, -2);
  return k >= 1 && (lua_Unsigned)k <= na;
}

static size_t fsize_table(lua_State *L, int idx, lua_Unsigned *narr, uint64_t *nhash) {
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_Unsigned na = lua_rawlen(L, idx);
  size_t need = 21;
  uint64_t nh = 0;
  for (lua_Unsigned i = 1; i <= na; i++) {
    size_t w = fsize(L, (lua_rawgeti(L, idx, (lua_Integer)i), -1));
    lua_pop(L, 1);
    if (!w)
      return 0;
    need += w;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (in_array(L, na)) {
      lua_pop(L, 1);
      continue;
    }
    size_t kw = fsize(L, -2), vw = fsize(L, -1);
    if (!kw || !vw) {
      lua_pop(L, 2);
      return 0;
    }
    need += kw + vw;
    nh++;
    lua_pop(L, 1);
  }
  *narr = na;
  *nhash = nh;
  return need;
}

static unsigned char *fput_table(lua_State *L, int idx, unsigned char *p, lua_Unsigned na,
                                 uint64_t nh) {
  *p++ = T_TABLE;
  p += wvar(p, na);
  p += wvar(p, nh);
  for (lua_Unsigned i = 1; i <= na; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i);
    p = fput(L, -1, p);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (in_array(L, na)) {
      lua_pop(L, 1);
      continue;
    }
    p = fput(L, -2, p);
    p = fput(L, -1, p);
    lua_pop(L, 1);
  }
  return p;
}

#define FAST_MAXTABLES 4

/* 1 = written; 0 = not for the fast path (or no memory): nothing written.
 * first is absolute and the stack has room for 3 more slots. */
static int fast_encode(lua_State *L, int first, int n, crt_buf *b) {
  size_t need = 12;
  int ntab = 0;
  int tabs[FAST_MAXTABLES];
  lua_Unsigned narr[FAST_MAXTABLES];
  uint64_t nhash[FAST_MAXTABLES];
  for (int i = 0; i < n; i++) {
    int idx = first + i;
    size_t w = fsize(L, idx);
    if (!w) {
      if (lua_type(L, idx) != LUA_TTABLE || ntab == FAST_MAXTABLES)
        return 0;
      for (int k = 0; k < ntab; k++)
        if (lua_rawequal(L, tabs[k], idx))
          return 0; /* the same table twice: a back reference */
      w = fsize_table(L, idx, &narr[ntab], &nhash[ntab]);
      if (!w)
        return 0;
      tabs[ntab++] = idx;
    }
    need += w;
  }
  if (b->cap - b->len < need && crt_buf_reserve(b, need) != 0)
    return 0;
  unsigned char *p = (unsigned char *)b->data + b->len, *p0 = p;
  *p++ = VERSION;
  *p++ = 0; /* flags: no back references */
  p += wvar(p, (uint64_t)n);
  for (int i = 0, t = 0; i < n; i++) {
    int idx = first + i;
    if (t < ntab && tabs[t] == idx) {
      p = fput_table(L, idx, p, narr[t], nhash[t]);
      t++;
    } else {
      p = fput(L, idx, p);
    }
  }
  b->len += (size_t)(p - p0);
  return 1;
}

static inline int fgetvar(const unsigned char **pp, const unsigned char *end, uint64_t *v) {
  const unsigned char *p = *pp;
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p == end)
      return -1;
    unsigned c = *p++;
    if (shift == 63 && c > 1)
      return -1; /* more than 64 bits: the full decoder names it */
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *pp = p;
      *v = r;
      return 0;
    }
  }
  return -1;
}

/* Push one scalar; 0, or -1 when it is not one (or not allowed: strings
 * need `alloc`) or is malformed. */
static inline int fget(lua_State *L, const unsigned char **pp, const unsigned char *end,
                       int alloc) {
  const unsigned char *p = *pp;
  uint64_t v;
  if (p == end)
    return -1;
  switch (*p++) {
  case T_NIL: lua_pushnil(L); break;
  case T_FALSE: lua_pushboolean(L, 0); break;
  case T_TRUE: lua_pushboolean(L, 1); break;
  case T_INT:
    if (fgetvar(&p, end, &v) != 0)
      return -1;
    lua_pushinteger(L, (lua_Integer)((v >> 1) ^ (0 - (v & 1))));
    break;
  case T_FLOAT: {
    if (end - p < 8)
      return -1;
    uint64_t u = 0;
    for (int k = 0; k < 8; k++)
      u |= (uint64_t)p[k] << (8 * k);
    p += 8;
    double d;
    memcpy(&d, &u, 8);
    lua_pushnumber(L, (lua_Number)d);
    break;
  }
  case T_STR:
    if (!alloc || fgetvar(&p, end, &v) != 0 || v > (uint64_t)(end - p))
      return -1;
    lua_pushlstring(L, (const char *)p, (size_t)v);
    p += v;
    break;
  default: return -1;
  }
  *pp = p;
  return 0;
}

/* A flat table (the tag was read). Keys must be strings, numbers other than
 * NaN, or booleans; anything else goes to the full decoder. */
static int fget_table(lua_State *L, const unsigned char **pp, const unsigned char *end) {
  uint64_t na, nh;
  const unsigned char *p = *pp;
  if (fgetvar(&p, end, &na) != 0 || fgetvar(&p, end, &nh) != 0 || na > (uint64_t)(end - p) ||
      nh > (uint64_t)(end - p) / 2)
    return -1;
  lua_createtable(L, (int)na, (int)nh);
  int t = lua_gettop(L);
  for (uint64_t i = 1; i <= na; i++) {
    if (fget(L, &p, end, 1) != 0)
      return -1;
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (uint64_t i = 0; i < nh; i++) {
    if (fget(L, &p, end, 1) != 0)
      return -1;
    if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
                             lua_tonumber(L, -1) != lua_tonumber(L, -1)))
      return -1;
    if (fget(L, &p, end, 1) != 0)
      return -1;
    lua_rawset(L, t);
  }
  *pp = p;
  return 0;
}

/* Values pushed, or -1 (nothing pushed) when the message is not for the
 * fast path: the full decoder then decides (and names any error). */
static int fast_decode(lua_State *L, const char *data, size_t len, int alloc) {
  const unsigned char *p = (const unsigned char *)data, *end = p + len;
  uint64_t n;
  if (len < 3 || p[0] != VERSION || p[1] != 0)
    return -1;
  p += 2;
  if (fgetvar(&p, end, &n) != 0 || n > (uint64_t)(end - p) || n > 100000 ||
      !lua_checkstack(L, (int)n + LUA_MINSTACK))
    return -1;
  int top = lua_gettop(L);
  for (uint64_t i = 0; i < n; i++) {
    if (alloc && p != end && *p == T_TABLE) {
      p++;
      if (fget_table(L, &p, end) != 0)
        goto slow;
    } else if (fget(L, &p, end, alloc) != 0) {
      goto slow;
    }
  }
  if (p != end)
    goto slow;
  return (int)n;
slow:
  lua_settop(L, top);
  return -1;
}

int crt_codec_encode_string(crt_buf *out, const char *s, size_t n) {
  if (out->cap - out->len < n + 14 && crt_buf_reserve(out, n + 14) != 0)
    return -1;
  unsigned char *p = (unsigned char *)out->data + out->len, *p0 = p;
  *p++ = VERSION;
  *p++ = 0;
  *p++ = 1; /* one value */
  *p++ = T_STR;
  p += wvar(p, (uint64_t)n);
  memcpy(p, s, n);
  out->len += (size_t)(p - p0) + n;
  return 0;
}

/* The protected body of crt_codec_encode: 1 = enc, 2..n+1 = the values. */
static int encmain(lua_State *L) {
  enc *e = lua_touserdata(L, 1);
  int n = e->n;
  lua_settop(L, n + 3);
  e->mtslot = n + 2;
  e->cfslot = n + 3;
  need(e, 12);
  unsigned char *p = wp(e);
  p[0] = VERSION;
  p[1] = 0;
  e->b->len += 2 + wvar(p + 2, (uint64_t)n);
  for (int k = 0; k < n; k++) {
    e->arg = k + 1;
    encv(e, 2 + k, 0);
  }
  if (e->hasrefs) {
    /* Rare: only messages with shared tables or cycles pay for the move. */
    size_t pos = e->hdr + 2 + varw((uint64_t)n);
    e->b->data[e->hdr + 1] |= F_REFS;
    need(e, 1);
    e->b->data[e->b->len++] = 0;
    memmove(e->b->data + pos + 1, e->b->data + pos, e->b->len - pos - 1);
    patch(e, pos, e->nobj);
  }
  return 0;
}

int crt_codec_encode(lua_State *L, int first, int n, crt_buf *out, int flags, const char *what,
                     int argbase) {
  size_t len0 = out->len, nchans0 = out->nchans;
  if (!what)
    what = "crt.codec: cannot encode";
  if (n < 0 || n > 1000000 || !lua_checkstack(L, n + 8)) {
    lua_pushfstring(L, "%s %d values (too many)", what, n);
    return -1;
  }
  first = lua_absindex(L, first);
  if (!(flags & CRT_CODEC_NOFAST) && fast_encode(L, first, n, out))
    return 0;
  /* About 5 KiB, mostly the path; on the C stack so that a call costs no
   * allocation. Only the fields read before being written are set. */
  enc ev, *e = &ev;
  e->L = L;
  e->b = out;
  e->flags = flags;
  e->what = what;
  e->n = n;
  e->argbase = argbase;
  e->arg = 0;
  e->hdr = len0;
  e->nobj = 0;
  e->hasrefs = 0;
  e->nfirst = 0;
  e->set = NULL;
  e->setcap = e->setn = 0;
  e->globals = NULL;
  e->crtlib = NULL;
  e->plen = 0;
  lua_pushcfunction(L, encmain);
  lua_pushlightuserdata(L, e);
  for (int i = 0; i < n; i++)
    lua_pushvalue(L, first + i);
  int st = lua_pcall(L, n + 1, 0, 0);
  if (e->set && e->set != e->inl)
    free(e->set);
  if (st != LUA_OK) {
    crt_buf_rewind(out, len0, nchans0);
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushliteral(L, "codec: encode failed");
    }
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- decode */

typedef struct dec {
  lua_State *L;
  const unsigned char *s, *p, *end;
  int flags;
  /* Bytes still owed to the open tables and functions: at least one per
   * value not yet started (two per key/value pair). Kept <= the bytes left,
   * it bounds what a declared count may preallocate. */
  size_t need;
  int refs; /* stack index of the refs array, 0 without F_REFS */
  lua_Integer nobj, maxobj;
  int mtslot, cfslot; /* stack slots for the registry tables */
} dec;

static void dfail(dec *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(d->L, fmt, ap);
  va_end(ap);
  lua_error(d->L); /* layers: unwind (inside encmain/decmain's lua_pcall) */
}

static lua_Integer at(dec *d) { return (lua_Integer)(d->p - d->s); }

static void truncated(dec *d) {
  dfail(d, "malformed input (truncated at byte %I)", (lua_Integer)(d->end - d->s));
}

static inline size_t avail(dec *d) { return (size_t)(d->end - d->p); }

static inline unsigned get1(dec *d) {
  if (d->p == d->end)
    truncated(d);
  return *d->p++;
}

static uint64_t getvar(dec *d) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    if (d->p == d->end)
      truncated(d);
    unsigned c = *d->p++;
    if (shift == 63 && c > 1)
      dfail(d, "malformed input (bad number at byte %I)", at(d) - 1);
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80))
      return v;
  }
}

static uint64_t get64(dec *d) {
  if (avail(d) < 8)
    truncated(d);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)d->p[i] << (8 * i);
  d->p += 8;
  return v;
}

/* A length-prefixed byte string inside the input. */
static const char *getbytes(dec *d, size_t *n) {
  uint64_t len = getvar(d);
  if (len > avail(d))
    truncated(d);
  const char *p = (const char *)d->p;
  d->p += len;
  *n = (size_t)len;
  return p;
}

/* Account for a container about to hold `slots` values (each at least one
 * byte of input). */
static void owe(dec *d, uint64_t slots) {
  size_t left = avail(d);
  if (d->need > left || slots > left - d->need)
    truncated(d);
  d->need += (size_t)slots;
}

static inline void paid(dec *d, size_t n) { d->need -= n; }

static void keep(dec *d, int idx) {
  if (!d->refs)
    return;
  if (d->nobj >= d->maxobj)
    dfail(d, "malformed input (undeclared object at byte %I)", at(d));
  lua_pushvalue(d->L, idx);
  lua_rawseti(d->L, d->refs, ++d->nobj);
}

static void decv(dec *d, int depth);

static void dect(dec *d, unsigned tag, int depth) {
  lua_State *L = d->L;
  if (depth > CRT_CODEC_MAXDEPTH)
    dfail(d, "input " TOODEEP);
  luaL_checkstack(L, 6, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  if (tag == T_TABLEMT) {
    size_t n;
    const char *name = getbytes(d, &n);
    if (lua_isnil(L, d->mtslot)) {
      lua_getfield(L, LUA_REGISTRYINDEX, CRT_CODEC_MTREG);
      lua_replace(L, d->mtslot);
    }
    lua_pushlstring(L, name, n);
    if (lua_type(L, d->mtslot) != LUA_TTABLE || lua_rawget(L, d->mtslot) != LUA_TTABLE)
      dfail(d, "metatable '%s' is not registered in this state (crt.codec.register)",
            lua_pushlstring(L, name, n));
  }
  uint64_t narr = getvar(d), nhash = getvar(d);
  if (narr > INT32_MAX || nhash > INT32_MAX / 2)
    truncated(d);
  owe(d, narr + 2 * nhash);
  lua_createtable(L, (int)narr, (int)nhash);
  int t = lua_gettop(L);
  keep(d, t);
  for (uint64_t i = 1; i <= narr; i++) {
    paid(d, 1);
    decv(d, depth);
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (uint64_t i = 0; i < nhash; i++) {
    paid(d, 2);
    size_t kat = (size_t)at(d);
    decv(d, depth);
    /* lua_rawset raises on these; they cannot come from an encoder. */
    if (lua_isnil(L, -1) ||
        (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) && isnan(lua_tonumber(L, -1))))
      dfail(d, "malformed input (nil or NaN key at byte %I)", (lua_Integer)kat);
    decv(d, depth);
    lua_rawset(L, t);
  }
  if (tag == T_TABLEMT) {
    lua_insert(L, -2);
    lua_setmetatable(L, -2);
  }
}

typedef struct rd {
  const char *p;
  size_t n;
} rd;

static const char *reader(lua_State *L, void *ud, size_t *size) {
  (void)L;
  rd *r = ud;
  *size = r->n;
  r->n = 0;
  return r->p;
}

static int nups(lua_State *L, int f) {
  lua_Debug ar;
  lua_pushvalue(L, f);
  lua_getinfo(L, ">u", &ar);
  return ar.nups;
}

static void decf(dec *d, int depth) {
  lua_State *L = d->L;
  if (depth > CRT_CODEC_MAXDEPTH)
    dfail(d, "input " TOODEEP);
  luaL_checkstack(L, 6, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  lua_Integer fat = at(d) - 1;
  rd r;
  r.p = getbytes(d, &r.n);
#ifdef CRT_CODEC_FUZZING
  if (!crt_codec_fuzz_bytecode_ok(r.p, r.n))
    dfail(d, "fuzzing: unknown bytecode");
#endif
  int st = lua_load(L, reader, &r, "=crt.codec", "b");
  if (st == LUA_ERRMEM)
    lua_error(L); /* layers: unwind (inside encmain/decmain's lua_pcall) */
  if (st != LUA_OK)
    dfail(d, "malformed input (bad function at byte %I: %s)", fat, lua_tostring(L, -1));
  int f = lua_gettop(L);
  keep(d, f);
  unsigned n = get1(d);
  if ((int)n != nups(L, f))
    dfail(d, "malformed input (wrong upvalue count at byte %I)", at(d) - 1);
  owe(d, n);
  for (unsigned i = 1; i <= n; i++) {
    paid(d, 1);
    if (d->p < d->end && *d->p == T_ENV) {
      d->p++;
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      lua_setupvalue(L, f, (int)i);
    } else if (d->p < d->end && *d->p == T_UPREF) {
      lua_Integer uat = at(d);
      d->p++;
      uint64_t ref = getvar(d);
      unsigned k = get1(d);
      if (!d->refs || ref >= (uint64_t)d->nobj)
        dfail(d, "malformed input (bad reference at byte %I)", uat);
      lua_rawgeti(L, d->refs, (lua_Integer)ref + 1);
      /* lua_upvaluejoin does not check its arguments. */
      if (lua_type(L, -1) != LUA_TFUNCTION || lua_iscfunction(L, -1) || k < 1 ||
          (int)k > nups(L, lua_gettop(L)))
        dfail(d, "malformed input (bad upvalue reference at byte %I)", uat);
      lua_upvaluejoin(L, f, (int)i, -1, (int)k);
      lua_pop(L, 1);
    } else {
      decv(d, depth);
      lua_setupvalue(L, f, (int)i);
    }
  }
}

static void decv(dec *d, int depth) {
  lua_State *L = d->L;
  if (d->p == d->end)
    truncated(d);
  unsigned tag = *d->p++;
  switch (tag) {
  case T_NIL: lua_pushnil(L); break;
  case T_FALSE:
  case T_TRUE: lua_pushboolean(L, tag == T_TRUE); break;
  case T_INT: {
    uint64_t z = getvar(d);
    lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (0 - (z & 1))));
    break;
  }
  case T_FLOAT: {
    uint64_t u = get64(d);
    double x;
    memcpy(&x, &u, 8);
    lua_pushnumber(L, (lua_Number)x);
    break;
  }
  case T_STR: {
    size_t n;
    const char *s = getbytes(d, &n);
    lua_pushlstring(L, s, n);
    break;
  }
  case T_TABLE:
  case T_TABLEMT: dect(d, tag, depth + 1); break;
  case T_CRT:
    if (lua_getfield(L, LUA_REGISTRYINDEX, "crt.lib") != LUA_TTABLE)
      dfail(d, "the crt table at byte %I has no counterpart in this state", at(d) - 1);
    break;
  case T_REF: {
    lua_Integer rat = at(d) - 1;
    uint64_t ref = getvar(d);
    if (!d->refs || ref >= (uint64_t)d->nobj)
      dfail(d, "malformed input (bad reference at byte %I)", rat);
    lua_rawgeti(L, d->refs, (lua_Integer)ref + 1);
    break;
  }
  case T_FUNC:
  case T_CFUNC:
    if (!(d->flags & CRT_CODEC_FUNCTIONS))
      dfail(d, "input contains a function at byte %I, and functions are not allowed", at(d) - 1);
    if (tag == T_FUNC) {
      decf(d, depth + 1);
    } else {
      size_t n;
      const char *name = getbytes(d, &n);
      if (lua_isnil(L, d->cfslot)) {
        cfmap(L);
        lua_replace(L, d->cfslot);
      }
      lua_pushlstring(L, name, n);
      if (lua_rawget(L, d->cfslot) != LUA_TFUNCTION)
        dfail(d, "unknown C function '%s' in input", lua_pushlstring(L, name, n));
    }
    break;
  case T_CHAN: {
    if (d->flags & CRT_CODEC_NOCHANS)
      dfail(d, "input contains a channel, and channels cannot cross a process boundary");
    uint64_t id = get64(d);
    luaL_checkstack(L, 8, "codec"); /* layers: unwind (inside encmain/decmain's lua_pcall) */
    if (crt_chan_push_id(L, id) != 0)
      dfail(d, "unknown channel in input (closed and collected?)");
    break;
  }
  default: dfail(d, "malformed input (bad tag %d at byte %I)", (int)tag, at(d) - 1);
  }
}

/* The protected body of crt_codec_decode: 1 = dec. Returns the values. */
static int decmain(lua_State *L) {
  dec *d = lua_touserdata(L, 1);
  lua_settop(L, 3);
  d->mtslot = 2;
  d->cfslot = 3;
  if (avail(d) < 2)
    truncated(d);
  unsigned v = *d->p++;
  if (v != VERSION)
    dfail(d, "malformed input (unknown format version %d)", (int)v);
  unsigned fl = *d->p++;
  if (fl & ~F_REFS)
    dfail(d, "malformed input (unknown flags %d)", (int)fl);
  uint64_t n = getvar(d);
  if (n > INT32_MAX)
    truncated(d);
  owe(d, n);
  if (fl & F_REFS) {
    uint64_t nobj = getvar(d);
    /* An object takes at least three bytes (tag and two counts). */
    if (nobj > avail(d) / 3)
      truncated(d);
    lua_createtable(L, (int)nobj, 0);
    d->refs = lua_gettop(L);
    d->maxobj = (lua_Integer)nobj;
  }
  const char *too_many = "too many values to decode";
  luaL_checkstack(L, (int)n + LUA_MINSTACK, too_many); /* layers: unwind (in decmain's pcall) */
  int base = lua_gettop(L);
  for (uint64_t i = 0; i < n; i++) {
    paid(d, 1);
    decv(d, 0);
  }
  if (d->p != d->end)
    dfail(d, "malformed input (trailing bytes at byte %I)", at(d));
  return lua_gettop(L) - base;
}

int crt_codec_decode(lua_State *L, const char *data, size_t len, int flags) {
  if (!lua_checkstack(L, 4)) {
    lua_pushstring(L, "codec: stack overflow");
    return -1;
  }
  int fn = (flags & CRT_CODEC_NOFAST) ? -1 : fast_decode(L, data, len, flags & CRT_CODEC_MAYRAISE);
  if (fn >= 0)
    return fn;
  dec d;
  d.L = L;
  d.s = d.p = (const unsigned char *)data;
  d.end = d.s + len;
  d.flags = flags;
  d.need = 0;
  d.refs = 0;
  d.nobj = d.maxobj = 0;
  int top = lua_gettop(L);
  lua_pushcfunction(L, decmain);
  lua_pushlightuserdata(L, &d);
  int st = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (st != LUA_OK) {
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushliteral(L, "codec: decode failed");
    }
    return -1;
  }
  return lua_gettop(L) - top;
}
