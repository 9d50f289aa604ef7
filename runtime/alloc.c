/*
 * alloc.c - crt_arena: a size-class allocator for Lua states (see alloc.h).
 *
 * Owned by one Lua state, touched by the thread running that state only.
 * Small blocks (<= SMALL_MAX bytes) are rounded up to a multiple of GRAIN
 * and served from the free list of their class, else bumped from the current
 * chunk. A block's class is derived from the size Lua reports, so blocks need
 * no header: a parked task's coroutine, its stack and its call frames cost
 * their exact rounded sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "alloc.h"

#define GRAIN ((size_t)16)
#define SMALL_MAX 1024
#define NCLASS (SMALL_MAX / GRAIN)
#define CHUNK ((size_t)64 * 1024)

typedef struct chunk {
  struct chunk *next;
} chunk;

typedef struct freeblock {
  struct freeblock *next;
} freeblock;

struct crt_arena {
  freeblock *free[NCLASS];
  char *bump, *end;
  chunk *chunks;
};

crt_arena *crt_arena_new(void) { return calloc(1, sizeof(crt_arena)); }

void crt_arena_free(crt_arena *a) {
  if (!a)
    return;
  chunk *c = a->chunks;
  while (c) {
    chunk *next = c->next;
    free(c);
    c = next;
  }
  free(a);
}

#ifndef CRT_PLAIN_ALLOC

static size_t class_of(size_t n) { return (n + GRAIN - 1) / GRAIN - 1; }

static void *small_alloc(crt_arena *a, size_t k) {
  freeblock *b = a->free[k];
  if (b) {
    a->free[k] = b->next;
    return b;
  }
  size_t size = (k + 1) * GRAIN;
  if ((size_t)(a->end - a->bump) < size) {
    /* The rest of the current chunk (< 1 KiB) is left unused. */
    chunk *c = malloc(CHUNK);
    if (!c)
      return NULL;
    c->next = a->chunks;
    a->chunks = c;
    a->bump = (char *)c + GRAIN; /* keep blocks GRAIN-aligned */
    a->end = (char *)c + CHUNK;
  }
  void *p = a->bump;
  a->bump += size;
  return p;
}

static void small_free(crt_arena *a, void *p, size_t k) {
  freeblock *b = p;
  b->next = a->free[k];
  a->free[k] = b;
}

void *crt_arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  crt_arena *a = ud;
  if (ptr == NULL)
    osize = 0; /* then osize is a type tag, not a size */
  int osmall = ptr && osize <= SMALL_MAX;
  if (nsize == 0) {
    if (osmall)
      small_free(a, ptr, class_of(osize));
    else
      free(ptr);
    return NULL;
  }
  int nsmall = nsize <= SMALL_MAX;
  if (ptr && osmall && nsmall && class_of(osize) == class_of(nsize))
    return ptr;
  if (ptr && !osmall && !nsmall)
    return realloc(ptr, nsize);
  void *n = nsmall ? small_alloc(a, class_of(nsize)) : malloc(nsize);
  if (!n)
    return NULL; /* Lua raises a memory error, also when shrinking */
  if (ptr) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    if (osmall)
      small_free(a, ptr, class_of(osize));
    else
      free(ptr);
  }
  return n;
}

#else

void *crt_arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

#endif

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "crt: unprotected error in a Lua call: %s\n", msg ? msg : "(not a string)");
  fflush(stderr);
  return 0; /* then Lua aborts */
}

lua_State *crt_arena_newstate(lua_Alloc f, void *ud) {
  if (f) {
    lua_State *L = lua_newstate(f, ud);
    if (L)
      lua_atpanic(L, panic);
    return L;
  }
  crt_arena *a = crt_arena_new();
  if (!a)
    return NULL;
  lua_State *L = lua_newstate(crt_arena_alloc, a);
  if (!L) {
    crt_arena_free(a);
    return NULL;
  }
  lua_atpanic(L, panic);
  return L;
}

void crt_arena_close_state(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  lua_close(L);
  if (f == crt_arena_alloc)
    crt_arena_free(ud);
}
