/*
 * stream.h - the stream object of crt.net (TCP connections) and of
 * crt.process.command (the pipes to a child): one implementation over
 * uv_stream_t for both.
 *
 * Loop thread only. A Lua stream is a userdata box holding a pointer to a
 * malloc'd crt_stream; the struct is freed by the handle's close callback,
 * never by the garbage collector (the box's finalizer only starts closing).
 */
#ifndef CRT_STREAM_H
#define CRT_STREAM_H

#include <lua.h>
#include <uv.h>

#include "io.h"
#include "scheduler.h"

#define CRT_STREAM_MT "crt.stream"

enum { CRT_STREAM_TCP, CRT_STREAM_PIPE };

typedef struct crt_stream {
  crt_handle_close_fn close_fn; /* must stay first (see rt.h) */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } u;
  crt_io *io;
  struct crt_stream **box; /* the Lua userdata's slot, NULL once collected */
  crt_link link;           /* in io->streams */

  /* Read side: bytes received and not yet consumed are
   * rbuf.data[roff, rbuf.len). rscan: how far (from roff) a readline has
   * already looked for "\n". */
  crt_buf rbuf;
  size_t roff, rscan;
  int rerr;         /* UV_EOF or an error once the read side ended */
  crt_task *reader; /* the task waiting in read/read_exactly/readline */
  int rmode;        /* what it waits for */
  size_t rwant;     /* read_exactly: how many bytes; read: at most; readline: the limit */

  /* Write side. */
  size_t nwrites; /* write requests not completed */
  int werr;       /* a failure of a write nobody waited for */
  uv_shutdown_t sreq;
  crt_task *shutter; /* the task waiting in stream:shutdown */

  int nwait; /* tasks waiting on this stream: the handle is ref'd while > 0 */
  unsigned char kind;
  unsigned char readable, writable;
  unsigned char started;  /* a read was asked once: read ahead from now on */
  unsigned char reading;  /* uv_read_start is active */
  unsigned char closed;   /* close() was called: no more reads and writes */
  unsigned char shutting; /* a shutdown request is pending */
  unsigned char shut;     /* the write side was shut down (or is being) */
  char peer[64];          /* "ip:port" of a TCP peer, "" otherwise */
} crt_stream;

/* A new stream with its handle initialised on io's loop (not yet
 * connected), or NULL with *err set. */
crt_stream *crt_stream_new(crt_io *io, int kind, int *err);
/* Push an empty stream box (a userdata with the stream metatable). */
crt_stream **crt_stream_newbox(lua_State *L);
/* Put s in box (the Lua object now owns s: collecting it closes s). */
void crt_stream_attach(crt_stream **box, crt_stream *s);
/* Record the TCP peer's address in s->peer. */
void crt_stream_set_peer(crt_stream *s);
/* Close: pending writes are flushed first, then the handle closes. */
void crt_stream_close(crt_stream *s);
/* Close now: pending writes fail with ECANCELED. */
void crt_stream_abort(crt_stream *s);
/* Shutdown help (see io.c): with force, abort every open stream; returns
 * how many streams still have writes or a shutdown pending. */
int crt_stream_close_all(crt_io *io, int force);
/* Create the stream metatable (idempotent). */
void crt_stream_open(lua_State *L);

#endif
