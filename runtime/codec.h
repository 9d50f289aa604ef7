/*
 * codec.h - the value codec: deep copies of Lua values between Lua states
 * (threads) and processes, as self-contained byte strings.
 *
 * Any thread may call these on the Lua state it owns. The codec keeps no
 * global state of its own except what channels need (chan.h).
 *
 * Format (version 1, little-endian): see the comment at the top of codec.c.
 */
#ifndef CRT_CODEC_H
#define CRT_CODEC_H

#include <lua.h>
#include <stddef.h>
#include "buf.h"

/* Flags for crt_codec_encode / crt_codec_decode. */
#define CRT_CODEC_FUNCTIONS 1 /* decode: accept functions (bytecode) */
#define CRT_CODEC_NOCHANS 2   /* encode/decode: refuse channels (process boundary) */
/* decode: the caller runs protected (or accepts a memory error raised in L):
 * the fast path (see below) may then also build strings and flat tables
 * without the decoder's own protected call. */
#define CRT_CODEC_MAYRAISE 4
/* encode/decode: skip the fast path (tests compare both paths). */
#define CRT_CODEC_NOFAST 8

/* Maximum nesting depth of tables and functions, on both sides. */
#define CRT_CODEC_MAXDEPTH 200

/* Registry key of this state's table of metatables registered with
 * crt.codec.register: name -> metatable and metatable -> name. */
#define CRT_CODEC_MTREG "crt.codec.metatables"

/*
 * Encode the n values at stack positions first..first+n-1 of L, appending to
 * out. On success returns 0. On failure returns -1 and pushes onto L an error
 * message string that names the path of the offending value, with `what` as
 * prefix, for example:
 *   "crt.thread.run: cannot send argument #2 .conn (userdata)"
 * where `what` = "crt.thread.run: cannot send" and the codec adds
 * " argument #2 .conn (userdata)" ("value" instead of "argument #k" when
 * n == 1 and argbase == 0). argbase is added to the 1-based value index to
 * number arguments (so a caller can skip a leading function argument).
 * Never raises a Lua error (it runs protected inside), never leaks.
 */
int crt_codec_encode(lua_State *L, int first, int n, crt_buf *out, int flags, const char *what,
                     int argbase);

/* Append a message of one string (s, n bytes) without a Lua state (a
 * worker reporting an error when its state has no memory left). Returns 0,
 * or -1 when out of memory (nothing appended). */
int crt_codec_encode_string(crt_buf *out, const char *s, size_t n);

/*
 * Decode a buffer produced by crt_codec_encode, pushing the values onto L.
 * Returns the number of values pushed (>= 0), or -1 with an error message
 * pushed on L (malformed, truncated, hostile input, functions refused, an
 * unknown channel, or out of memory). Never raises, never crashes; with
 * CRT_CODEC_MAYRAISE in flags it may raise a memory error (only that).
 *
 * Fast path: both functions first try a direct path for messages of
 * scalars (nil, booleans, numbers, strings) and flat tables of scalars
 * without a metatable, in the same format (see "fast path" in codec.c);
 * every other message takes the full, protected path.
 */
int crt_codec_decode(lua_State *L, const char *data, size_t len, int flags);

#endif
