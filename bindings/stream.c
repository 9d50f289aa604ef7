/*
 * stream.c - the stream object shared by TCP connections (crt.net) and the
 * pipes of child programs (crt.process.command): buffered reads
 * (read, read_exactly, readline, lines), writes with back-pressure, shutdown
 * and close.
 *
 * Loop thread only. Invariants:
 * - At most one task reads a stream at a time (a second one raises); it is
 *   s->reader while parked, and is woken or unparked exactly once.
 * - Reading starts with the first read call and then reads ahead while fewer
 *   than CRT_STREAM_AHEAD bytes are buffered or a reader needs more; past
 *   that it stops (uv_read_stop) until a reader consumes: a peer that sends
 *   faster than the script reads is held back by TCP, not by memory.
 * - A readline needs at most its line limit (CRT_STREAM_LINE_MAX by default)
 *   plus 2 bytes: once that many are buffered without a "\n" it fails
 *   (EMSGSIZE) and consumes nothing, so a peer sending an endless line grows
 *   the buffer to about max(limit, CRT_STREAM_AHEAD) plus one read.
 * - The handle is ref'd (keeps the loop alive) only while a task waits on it
 *   (nwait > 0), so that idle streams never hold up the runtime's exit.
 * - A writer whose data could not all go out at once has it queued (copied
 *   when small, else the Lua string is pinned by a registry reference until
 *   the write completes). When more than CRT_STREAM_HIGH_WATER bytes are
 *   queued, the writer waits for its own write's completion.
 * - A parked reader finds its stream through its own argument (the box), not
 *   a saved pointer: another task's close() may free the struct before the
 *   reader resumes; the box is cleared by the close callback.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "buf.h"
#include "list.h"
#include "rt.h"
#include "scheduler.h"
#include "stream.h"
#include "util.h"

#define CRT_STREAM_AHEAD ((size_t)256 * 1024)
#define CRT_STREAM_HIGH_WATER ((size_t)1024 * 1024)
#define CRT_STREAM_COPY_MAX ((size_t)16 * 1024)
#define CRT_STREAM_MAX_EXACT ((size_t)1 << 30)
#define CRT_STREAM_LINE_MAX ((size_t)64 * 1024)
#define CRT_STREAM_KEEP_BUF ((size_t)256 * 1024)
#define CRT_STREAM_MIN_BUF ((size_t)4096)
#define CRT_STREAM_MAX_BUFS 16
#define CRT_STREAM_BUF_PART ((size_t)1 << 30)

enum { RD_ANY, RD_EXACT, RD_LINE };

typedef struct wreq {
  uv_write_t req;
  crt_stream *s;
  crt_task *waiter;
  int ref; /* the pinned Lua string, or LUA_NOREF when copied */
  char data[];
} wreq;

/* ---- ref counting, closing ------------------------------------------------- */

static void hold(crt_stream *s) {
  if (s->nwait++ == 0 && !uv_is_closing(&s->u.handle))
    uv_ref(&s->u.handle);
}

static void release(crt_stream *s) {
  if (--s->nwait == 0 && !uv_is_closing(&s->u.handle))
    uv_unref(&s->u.handle);
}

static void close_cb(uv_handle_t *h) {
  crt_stream *s = h->data;
  crt_list_remove(&s->io->streams, &s->link);
  if (s->box)
    *s->box = NULL;
  crt_buf_free(&s->rbuf);
  free(s);
}

static void close_handle(crt_stream *s) {
  if (!uv_is_closing(&s->u.handle))
    uv_close(&s->u.handle, close_cb);
}

static void stop_reading(crt_stream *s) {
  if (s->reading) {
    uv_read_stop(&s->u.stream);
    s->reading = 0;
  }
}

static void wake_reader(crt_stream *s) {
  crt_task *t = s->reader;
  s->reader = NULL;
  release(s);
  crt_task_wake(t, 0);
}

/* Wake t, which waited on s in a write or a shutdown, with the status. */
static void wake_status(crt_stream *s, crt_task *t, int status) {
  release(s);
  lua_pushinteger(crt_task_co(t), status);
  crt_task_wake(t, 1);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  crt_stream *s = req->data;
  s->shutting = 0;
  if (s->shutter) {
    crt_task *t = s->shutter;
    s->shutter = NULL;
    wake_status(s, t, status);
  }
  if (s->closed)
    close_handle(s);
}

void crt_stream_close(crt_stream *s) {
  if (s->closed)
    return;
  s->closed = 1;
  stop_reading(s);
  if (s->reader)
    wake_reader(s);
  if (s->shutting)
    return; /* shutdown_cb closes the handle */
  if (s->nwrites > 0 && s->writable && !s->shut) {
    s->sreq.data = s;
    if (uv_shutdown(&s->sreq, &s->u.stream, shutdown_cb) == 0) {
      s->shutting = s->shut = 1;
      return;
    }
  }
  close_handle(s);
}

void crt_stream_abort(crt_stream *s) {
  s->closed = 1;
  stop_reading(s);
  if (s->reader)
    wake_reader(s);
  close_handle(s);
}

static void stream_close_fn(uv_handle_t *h) { crt_stream_abort(h->data); }

int crt_stream_close_all(crt_io *io, int force) {
  int pending = 0;
  crt_list_each_safe(&io->streams, it, nx) {
    crt_stream *s = crt_container_of(it, crt_stream, link);
    if (force)
      crt_stream_abort(s);
    else if (s->nwrites > 0 || s->shutting)
      pending++;
  }
  return pending;
}

crt_stream *crt_stream_new(crt_io *io, int kind, int *err) {
  crt_stream *s = calloc(1, sizeof *s);
  if (!s) {
    *err = UV_ENOMEM;
    return NULL;
  }
  uv_loop_t *loop = crt_rt_loop(io->rt);
  int r = kind == CRT_STREAM_TCP ? uv_tcp_init(loop, &s->u.tcp) : uv_pipe_init(loop, &s->u.pipe, 0);
  if (r < 0) {
    free(s);
    *err = r;
    return NULL;
  }
  s->close_fn = stream_close_fn;
  s->u.handle.data = s;
  s->io = io;
  s->kind = (unsigned char)kind;
  s->readable = s->writable = 1;
  uv_unref(&s->u.handle);
  crt_list_push_front(&io->streams, &s->link);
  return s;
}

crt_stream **crt_stream_newbox(lua_State *L) {
  crt_stream **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, CRT_STREAM_MT);
  return box;
}

void crt_stream_attach(crt_stream **box, crt_stream *s) {
  *box = s;
  s->box = box;
}

void crt_stream_set_peer(crt_stream *s) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  s->peer[0] = '\0';
  if (s->kind == CRT_STREAM_TCP && uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0)
    crt_io_format_addr((struct sockaddr *)&ss, s->peer, sizeof s->peer);
}

/* ---- reading ------------------------------------------------------------- */

/* Bytes received and not yet consumed. */
static inline size_t buffered(const crt_stream *s) { return s->rbuf.len - s->roff; }

/* Move the unconsumed bytes to the start of the buffer. */
static void compact(crt_stream *s) {
  memmove(s->rbuf.data, s->rbuf.data + s->roff, buffered(s));
  s->rbuf.len -= s->roff;
  s->roff = 0;
}

static int buf_append(crt_stream *s, const char *p, size_t n) {
  crt_buf *b = &s->rbuf;
  if (b->cap - b->len < n && s->roff > 0)
    compact(s);
  /* A first buffer of CRT_STREAM_MIN_BUF, doubled when more is needed. */
  if (b->cap == 0 && crt_buf_reserve(b, CRT_STREAM_MIN_BUF) < 0)
    return UV_ENOMEM;
  return crt_buf_append(b, p, n) < 0 ? UV_ENOMEM : 0;
}

static void consume(crt_stream *s, size_t n) {
  s->roff += n;
  s->rscan = s->rscan > n ? s->rscan - n : 0;
  if (s->roff == s->rbuf.len) {
    s->roff = 0;
    s->rbuf.len = 0;
    if (s->rbuf.cap > CRT_STREAM_KEEP_BUF)
      crt_buf_free(&s->rbuf);
  }
}

enum { LINE_NONE, LINE_FOUND, LINE_LONG };

/* Look for the next line in the buffer, with s->rwant as its limit: LINE_FOUND
 * with *len (without the "\n" and a "\r" before it) and *skip (with them),
 * LINE_LONG when the line has more than the limit, else LINE_NONE. Only the
 * first limit + 2 bytes are looked at ("\r\n" after limit bytes); s->rscan
 * remembers how far there is no "\n", so each byte is looked at once. */
static int find_line(crt_stream *s, size_t *len, size_t *skip) {
  const char *base = s->rbuf.data + s->roff;
  size_t rlen = buffered(s), max = s->rwant;
  size_t span = rlen < max + 2 ? rlen : max + 2;
  const char *nl = span > s->rscan ? memchr(base + s->rscan, '\n', span - s->rscan) : NULL;
  if (nl) {
    size_t n = (size_t)(nl - base);
    s->rscan = n;
    *skip = n + 1;
    if (n > 0 && base[n - 1] == '\r')
      n--;
    *len = n;
    return n > max ? LINE_LONG : LINE_FOUND;
  }
  if (span > s->rscan)
    s->rscan = span;
  return rlen >= max + 2 ? LINE_LONG : LINE_NONE;
}

/* Is what the reader waits for there (or will it never be)? For readline,
 * leaves rscan at the "\n" found. */
static int satisfied(crt_stream *s) {
  if (s->rerr || s->closed)
    return 1;
  size_t rlen = buffered(s), len, skip;
  switch (s->rmode) {
  case RD_ANY: return rlen > 0;
  case RD_EXACT: return rlen >= s->rwant;
  default: return find_line(s, &len, &skip) != LINE_NONE;
  }
}

/* libuv reads into the free end of the stream's buffer when it is large
 * (bulk transfers: one copy less), else into the shared slab. */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  crt_stream *s = h->data;
  crt_buf *b = &s->rbuf;
  (void)suggested;
  if (b->cap >= CRT_IO_SLAB) {
    if (s->roff > 0 && b->cap - b->len < CRT_IO_SLAB)
      compact(s);
    size_t room = b->cap - b->len;
    if (room >= CRT_IO_SLAB / 2) {
      buf->base = b->data + b->len;
      buf->len = room;
      return;
    }
  }
  buf->base = s->io->slab;
  buf->len = CRT_IO_SLAB;
}

static void update_reading(crt_stream *s);

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  crt_stream *s = st->data;
  if (nread > 0) {
    if (buf->base != s->io->slab)
      s->rbuf.len += (size_t)nread; /* read in place (alloc_cb) */
    else if (buf_append(s, buf->base, (size_t)nread) < 0)
      s->rerr = UV_ENOMEM;
  } else if (nread < 0) {
    s->rerr = (int)nread;
  } else {
    return;
  }
  if (s->reader && satisfied(s))
    wake_reader(s);
  update_reading(s);
}

static void update_reading(crt_stream *s) {
  int want = s->started && s->readable && !s->rerr && !s->closed &&
             (s->reader != NULL || buffered(s) < CRT_STREAM_AHEAD);
  if (want && !s->reading) {
    int r = uv_read_start(&s->u.stream, alloc_cb, read_cb);
    if (r < 0)
      s->rerr = r;
    else
      s->reading = 1;
  } else if (!want) {
    stop_reading(s);
  }
}

static crt_stream *check_stream(lua_State *L, const char *fname) {
  crt_stream *s;
  /* Fast path on every call: a method's upvalue 1 is the stream metatable
   * (crt_stream_open), compared without looking the class up by name. */
  crt_stream **box = lua_touserdata(L, 1);
  int same = 0;
  if (box && lua_getmetatable(L, 1)) {
    same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  s = same ? *box : crt_checkptr(L, 1, CRT_STREAM_MT, "stream", fname);
  if (!s || s->closed)
    crt_errorf(L, fname, "the stream is closed");
  return s;
}

/* nil, "<fname>: line longer than <max> bytes", "EMSGSIZE": the line stays
 * buffered. */
static int line_too_long(lua_State *L, crt_stream *s, const char *fname) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: line longer than %I bytes", fname, (lua_Integer)s->rwant);
  lua_pushstring(L, uv_err_name(UV_EMSGSIZE));
  return 3;
}

/* Push what the reader asked for from the buffer (s->rmode), or nil at the
 * end, or nil, message, code after an error. */
static int deliver(lua_State *L, crt_stream *s, const char *fname) {
  const char *base = s->rbuf.data + s->roff;
  size_t rlen = buffered(s);
  int n = 1;
  switch (s->rmode) {
  case RD_ANY:
    if (rlen > 0 && !s->closed) {
      size_t take = s->rwant && s->rwant < rlen ? s->rwant : rlen;
      lua_pushlstring(L, base, take);
      consume(s, take);
      goto done;
    }
    break;
  case RD_EXACT:
    if (rlen >= s->rwant && !s->closed) {
      lua_pushlstring(L, base, s->rwant);
      consume(s, s->rwant);
      goto done;
    }
    break;
  default: {
    if (s->closed)
      break;
    size_t len, skip;
    int found = find_line(s, &len, &skip);
    if (found == LINE_FOUND) {
      lua_pushlstring(L, base, len);
      consume(s, skip);
      goto done;
    }
    if (found == LINE_LONG || (rlen > s->rwant && s->rerr == UV_EOF))
      return line_too_long(L, s, fname);
    if (rlen > 0 && s->rerr == UV_EOF) {
      lua_pushlstring(L, base, rlen); /* the last line, without "\n" */
      consume(s, rlen);
      goto done;
    }
    break;
  }
  }
  if (s->closed || s->rerr == UV_EOF || s->rerr == 0) {
    lua_pushnil(L);
    return 1;
  }
  return crt_pushfail(L, s->rerr, fname);
done:
  update_reading(s);
  return n;
}

/* ctx of a read: the mode, plus RD_RAISE for the lines iterator, which
 * raises a read error instead of returning it (a for loop would drop it). */
#define RD_RAISE 8

static const char *read_name(lua_KContext ctx) {
  static const char *const names[] = {"stream:read", "stream:read_exactly", "stream:readline"};
  return (ctx & RD_RAISE) ? "stream:lines" : names[ctx & 7];
}

static int finish_read(lua_State *L, crt_stream *s, lua_KContext ctx) {
  int n = deliver(L, s, read_name(ctx));
  if (n == 3 && (ctx & RD_RAISE)) {
    lua_pop(L, 1);
    return lua_error(L);
  }
  return n;
}

static void read_unpark(crt_task *t, void *data) {
  crt_stream *s = data;
  (void)t;
  s->reader = NULL;
  release(s);
  update_reading(s);
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  crt_stream **box = lua_touserdata(L, 1);
  if (!*box) {
    lua_pushnil(L); /* closed (and freed) while we waited */
    return 1;
  }
  return finish_read(L, *box, ctx);
}

static int read_common(lua_State *L, int ctx, size_t want) {
  int mode = ctx & 7;
  const char *fname = read_name(ctx);
  crt_stream *s = check_stream(L, fname);
  crt_task *t = crt_task_require(L, fname);
  if (!s->readable)
    return crt_errorf(L, fname, "the stream is not readable");
  if (s->reader)
    return crt_errorf(L, fname, "another task is already reading this stream");
  s->rmode = mode;
  s->rwant = want;
  s->started = 1;
  if (satisfied(s))
    return finish_read(L, s, ctx);
  s->reader = t;
  hold(s);
  update_reading(s);
  if (s->rerr && !s->reading) {
    s->reader = NULL;
    release(s);
    return finish_read(L, s, ctx);
  }
  return crt_task_park(L, t, read_unpark, s, read_k, ctx);
}

/* The byte count at index 2: an integer (raises otherwise). */
static lua_Integer check_count(lua_State *L, const char *fname) {
  int isint = 0;
  lua_Integer n = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
  if (!isint)
    crt_typeerror(L, fname, 2, "integer");
  return n;
}

/* stream:read([max]): what has arrived, at most max bytes when given. */
static int s_read(lua_State *L) {
  size_t max = 0;
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = check_count(L, "stream:read");
    if (n < 1)
      return crt_argerror(L, "stream:read", 2, "count must be positive");
    max = (size_t)n;
  }
  return read_common(L, RD_ANY, max);
}

static int s_read_exactly(lua_State *L) {
  lua_Integer n = check_count(L, "stream:read_exactly");
  if (n < 0)
    return crt_argerror(L, "stream:read_exactly", 2, "negative count");
  if ((lua_Unsigned)n > CRT_STREAM_MAX_EXACT)
    return crt_argerror(L, "stream:read_exactly", 2, "count too large (at most 1 GiB)");
  if (n == 0) {
    check_stream(L, "stream:read_exactly");
    lua_pushliteral(L, "");
    return 1;
  }
  return read_common(L, RD_EXACT, (size_t)n);
}

/* The line limit of readline/lines at index 2: CRT_STREAM_LINE_MAX when
 * absent, else an integer from 1 to 1 GiB (raises otherwise). */
static size_t check_line_max(lua_State *L, const char *fname) {
  if (lua_isnoneornil(L, 2))
    return CRT_STREAM_LINE_MAX;
  lua_Integer n = check_count(L, fname);
  if (n < 1)
    crt_argerror(L, fname, 2, "line limit must be positive");
  if ((lua_Unsigned)n > CRT_STREAM_MAX_EXACT)
    crt_argerror(L, fname, 2, "line limit too large (at most 1 GiB)");
  return (size_t)n;
}

/* stream:readline([max]): the next line, at most max bytes. */
static int s_readline(lua_State *L) {
  return read_common(L, RD_LINE, check_line_max(L, "stream:readline"));
}

static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return read_common(L, RD_LINE | RD_RAISE, (size_t)lua_tointeger(L, lua_upvalueindex(2)));
}

/* stream:lines([max]): an iterator of readline(max) that raises failures. */
static int s_lines(lua_State *L) {
  size_t max = check_line_max(L, "stream:lines");
  check_stream(L, "stream:lines");
  lua_settop(L, 1);
  lua_pushinteger(L, (lua_Integer)max);
  lua_pushcclosure(L, lines_iter, 2);
  return 1;
}

/* ---- writing ------------------------------------------------------------- */

static void free_wreq(crt_stream *s, wreq *w) {
  if (w->ref != LUA_NOREF)
    luaL_unref(crt_lua(s->io->rt), LUA_REGISTRYINDEX, w->ref);
  free(w);
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = req->data;
  crt_stream *s = w->s;
  s->nwrites--;
  if (w->waiter) {
    crt_task *t = w->waiter;
    w->waiter = NULL;
    wake_status(s, t, status);
  } else if (status < 0 && status != UV_ECANCELED && !s->werr) {
    s->werr = status;
  }
  free_wreq(s, w);
}

static void write_unpark(crt_task *t, void *data) {
  wreq *w = data;
  (void)t;
  w->waiter = NULL;
  release(w->s);
}

/* Continuation of a write or a shutdown that waited: the status is on top. */
static int status_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int st = (int)lua_tointeger(L, -1);
  if (st < 0)
    return crt_pushfail(L, st, (const char *)ctx);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_write(lua_State *L) {
  static const char fname[] = "stream:write";
  crt_stream *s = check_stream(L, fname);
  if (lua_type(L, 2) != LUA_TSTRING)
    return crt_typeerror(L, fname, 2, "string");
  crt_task *t = crt_task_require(L, fname);
  if (!s->writable)
    return crt_errorf(L, fname, "the stream is not writable");
  if (s->shut)
    return crt_errorf(L, fname, "the stream was shut down for writing");
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  if (len > CRT_STREAM_MAX_BUFS * CRT_STREAM_BUF_PART)
    return crt_argerror(L, fname, 2, "string too large");
  if (s->werr) {
    int e = s->werr;
    s->werr = 0;
    return crt_pushfail(L, e, fname);
  }
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (s->nwrites == 0) {
    uv_buf_t b =
        uv_buf_init((char *)p, (unsigned)(len < CRT_STREAM_BUF_PART ? len : CRT_STREAM_BUF_PART));
    int n = uv_try_write(&s->u.stream, &b, 1);
    if (n >= 0 && (size_t)n == len) {
      lua_pushboolean(L, 1);
      return 1;
    }
    if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS)
      return crt_pushfail(L, n, fname);
    if (n > 0) {
      p += n;
      len -= (size_t)n;
    }
  }
  int ref = LUA_NOREF;
  int copy = len <= CRT_STREAM_COPY_MAX;
  if (!copy) {
    lua_pushvalue(L, 2);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  wreq *w = malloc(sizeof *w + (copy ? len : 0));
  if (!w) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return crt_pushfail(L, UV_ENOMEM, fname);
  }
  w->s = s;
  w->waiter = NULL;
  w->ref = ref;
  w->req.data = w;
  if (copy) {
    memcpy(w->data, p, len);
    p = w->data;
  }
  uv_buf_t bufs[CRT_STREAM_MAX_BUFS];
  unsigned nbufs = 0;
  for (size_t off = 0; off < len; off += CRT_STREAM_BUF_PART) {
    size_t part = len - off < CRT_STREAM_BUF_PART ? len - off : CRT_STREAM_BUF_PART;
    bufs[nbufs++] = uv_buf_init((char *)p + off, (unsigned)part);
  }
  int r = uv_write(&w->req, &s->u.stream, bufs, nbufs, write_cb);
  if (r < 0) {
    free_wreq(s, w);
    return crt_pushfail(L, r, fname);
  }
  s->nwrites++;
  if (uv_stream_get_write_queue_size(&s->u.stream) > CRT_STREAM_HIGH_WATER) {
    w->waiter = t;
    hold(s);
    return crt_task_park(L, t, write_unpark, w, status_k, (lua_KContext)fname);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void shutdown_unpark(crt_task *t, void *data) {
  crt_stream *s = data;
  (void)t;
  s->shutter = NULL;
  release(s);
}

static int s_shutdown(lua_State *L) {
  static const char fname[] = "stream:shutdown";
  crt_stream *s = check_stream(L, fname);
  crt_task *t = crt_task_require(L, fname);
  if (!s->writable)
    return crt_errorf(L, fname, "the stream is not writable");
  if (s->shut) {
    lua_pushboolean(L, 1);
    return 1;
  }
  s->sreq.data = s;
  int r = uv_shutdown(&s->sreq, &s->u.stream, shutdown_cb);
  if (r < 0)
    return crt_pushfail(L, r, fname);
  s->shutting = s->shut = 1;
  s->shutter = t;
  hold(s);
  return crt_task_park(L, t, shutdown_unpark, s, status_k, (lua_KContext)fname);
}

static void close_obj(void *s) { crt_stream_close(s); }

static int s_close(lua_State *L) {
  return crt_io_close_method(L, CRT_STREAM_MT, "stream", "stream:close", close_obj);
}

static int s_gc(lua_State *L) {
  crt_stream *s = crt_io_unbox(L, 1);
  if (s) {
    s->box = NULL;
    crt_stream_close(s);
  }
  return 0;
}

static int s_tostring(lua_State *L) {
  crt_stream **box = lua_touserdata(L, 1);
  crt_stream *s = *box;
  if (!s || s->closed)
    lua_pushfstring(L, "crt.stream: %p (closed)", (void *)box);
  else if (s->kind == CRT_STREAM_TCP)
    lua_pushfstring(L, "crt.stream: %p (tcp %s)", (void *)box, s->peer);
  else
    lua_pushfstring(L, "crt.stream: %p (pipe)", (void *)box);
  return 1;
}

static int s_index(lua_State *L) {
  crt_stream **box = lua_touserdata(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "peer") == 0) {
    if (*box && (*box)->peer[0])
      lua_pushstring(L, (*box)->peer);
    else
      lua_pushnil(L);
    return 1;
  }
  if (k && strcmp(k, "buffered") == 0) {
    if (*box && !(*box)->closed)
      lua_pushinteger(L, (lua_Integer)buffered(*box));
    else
      lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

void crt_stream_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"read", s_read},         {"read_exactly", s_read_exactly},
                                     {"readline", s_readline}, {"lines", s_lines},
                                     {"write", s_write},       {"shutdown", s_shutdown},
                                     {"close", s_close},       {NULL, NULL}};
  /* __index is a function (for the peer and buffered fields) over the
   * methods table, its upvalue. */
  static const luaL_Reg meta[] = {{"__index", s_index},
                                  {"__gc", s_gc},
                                  {"__close", s_close},
                                  {"__tostring", s_tostring},
                                  {NULL, NULL}};
  luaL_newlibtable(L, methods);
  lua_pushnil(L); /* upvalue 1 of the methods: the metatable, set below */
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -1);
  crt_newclass(L, CRT_STREAM_MT, NULL, meta, 1);
  luaL_getmetatable(L, CRT_STREAM_MT);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pushvalue(L, -3);
    lua_setupvalue(L, -2, 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}
