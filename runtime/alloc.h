/*
 * alloc.h - crt_arena, the allocator of the Lua states crt creates: blocks
 * up to 1 KiB come from per-size-class free lists carved out of 64 KiB
 * chunks, with no header (Lua always passes a block's size back), larger
 * ones from malloc.
 *
 * One arena per Lua state; a state is used by one thread at a time, so the
 * arena takes no lock. Freed small blocks are reused by later allocations of
 * the same class; the chunks return to the system when the state closes.
 * Built with CRT_PLAIN_ALLOC (the sanitizer builds), it is plain
 * realloc/free so that AddressSanitizer and valgrind see every block.
 */
#ifndef CRT_ALLOC_H
#define CRT_ALLOC_H

#include <lua.h>
#include <stddef.h>

typedef struct crt_arena crt_arena;

crt_arena *crt_arena_new(void);
void crt_arena_free(crt_arena *a);
/* The lua_Alloc function; ud is the arena. */
void *crt_arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* A new state with crt's panic handler (the standard libraries not yet
 * opened). Its allocator is f with ud (a host's crt_config.alloc) or, when
 * f is NULL, a new arena (freed by crt_arena_close_state). */
lua_State *crt_arena_newstate(lua_Alloc f, void *ud);
/* lua_close the state and free its arena (if it has one). */
void crt_arena_close_state(lua_State *L);

#endif
