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

#include "rt.h"
#include "util.h"
#include "scheduler.h"
#include "stream.h"

#define CRT_STREAM_AHEAD ((size_t)256 * 1024)
#define CRT_STREAM_HIGH_WATER ((size_t)1024 * 1024)
#define CRT_STREAM_COPY_MAX ((size_t)16 * 1024)
#define CRT_STREAM_MAX_EXACT ((size_t)1 << 30)
#define CRT_STREAM_KEEP_BUF ((size_t)256 * 1024)
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

/* ---- list, ref counting, closing ------------------------------------------- */

static void list_add(crt_stream *s) {
  crt_io *io = s->io;
  s->prev = NULL;
  s->next = io->streams;
  if (io->streams)
    io->streams->prev = s;
  io->streams = s;
}

static void list_remove(crt_stream *s) {
  if (s->prev)
    s->prev->next = s->next;
  else if (s->io->streams == s)
    s->io->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

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
  list_remove(s);
  if (s->box)
    *s->box = NULL;
  free(s->rbuf);
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

static void shutdown_cb(uv_shutdown_t *req, int status) {
  crt_stream *s = req->data;
  s->shutting = 0;
  if (s->shutter) {
    crt_task *t = s->shutter;
    s->shutter = NULL;
    release(s);
    lua_pushinteger(crt_task_co(t), status);
    crt_task_wake(t, 1);
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
  crt_stream *next;
  for (crt_stream *s = io->streams; s; s = next) {
    next = s->next;
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
  int r = kind == CRT_STREAM_TCP ? uv_tcp_init(crt_rt_loop(io->rt), &s->u.tcp)
                                 : uv_pipe_init(crt_rt_loop(io->rt), &s->u.pipe, 0);
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
  list_add(s);
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

static int buf_append(crt_stream *s, const char *p, size_t n) {
  if (s->rcap - s->roff - s->rlen < n) {
    if (s->roff > 0) {
      memmove(s->rbuf, s->rbuf + s->roff, s->rlen);
      s->roff = 0;
    }
    if (s->rcap - s->rlen < n) {
      size_t cap = s->rcap ? s->rcap * 2 : 4096;
      while (cap < s->rlen + n)
        cap *= 2;
      char *b = realloc(s->rbuf, cap);
      if (!b)
        return UV_ENOMEM;
      s->rbuf = b;
      s->rcap = cap;
    }
  }
  memcpy(s->rbuf + s->roff + s->rlen, p, n);
  s->rlen += n;
  return 0;
}

static void consume(crt_stream *s, size_t n) {
  s->roff += n;
  s->rlen -= n;
  s->rscan = s->rscan > n ? s->rscan - n : 0;
  if (s->rlen == 0) {
    s->roff = 0;
    if (s->rcap > CRT_STREAM_KEEP_BUF) {
      free(s->rbuf);
      s->rbuf = NULL;
      s->rcap = 0;
    }
  }
}

/* Is what the reader waits for there (or will it never be)? For readline,
 * leaves rscan at the "\n" found. */
static int satisfied(crt_stream *s) {
  if (s->rerr || s->closed)
    return 1;
  switch (s->rmode) {
  case RD_ANY: return s->rlen > 0;
  case RD_EXACT: return s->rlen >= s->rwant;
  default: {
    const char *base = s->rbuf + s->roff;
    const char *nl = s->rlen > s->rscan ? memchr(base + s->rscan, '\n', s->rlen - s->rscan) : NULL;
    if (nl) {
      s->rscan = (size_t)(nl - base);
      return 1;
    }
    s->rscan = s->rlen;
    return 0;
  }
  }
}

/* libuv reads into the free end of the stream's buffer when it is large
 * (bulk transfers: one copy less), else into the shared slab. */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  crt_stream *s = h->data;
  (void)suggested;
  if (s->rcap >= CRT_IO_SLAB) {
    if (s->roff > 0 && s->rcap - s->roff - s->rlen < CRT_IO_SLAB) {
      memmove(s->rbuf, s->rbuf + s->roff, s->rlen);
      s->roff = 0;
    }
    size_t room = s->rcap - s->roff - s->rlen;
    if (room >= CRT_IO_SLAB / 2) {
      buf->base = s->rbuf + s->roff + s->rlen;
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
      s->rlen += (size_t)nread; /* read in place (alloc_cb) */
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
             (s->reader != NULL || s->rlen < CRT_STREAM_AHEAD);
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
  crt_stream **box = luaL_testudata(L, 1, CRT_STREAM_MT);
  if (!box) {
    crt_typeerror(L, fname, 1, "stream");
    return NULL;
  }
  if (!*box || (*box)->closed) {
    crt_errorf(L, fname, "the stream is closed");
    return NULL;
  }
  return *box;
}

/* Push what the reader asked for from the buffer (s->rmode), or nil at the
 * end, or nil, message, code after an error. */
static int deliver(lua_State *L, crt_stream *s, const char *fname) {
  const char *base = s->rbuf + s->roff;
  int n = 1;
  switch (s->rmode) {
  case RD_ANY:
    if (s->rlen > 0 && !s->closed) {
      size_t take = s->rwant && s->rwant < s->rlen ? s->rwant : s->rlen;
      lua_pushlstring(L, base, take);
      consume(s, take);
      goto done;
    }
    break;
  case RD_EXACT:
    if (s->rlen >= s->rwant && !s->closed) {
      lua_pushlstring(L, base, s->rwant);
      consume(s, s->rwant);
      goto done;
    }
    break;
  default: {
    if (s->closed)
      break;
    const char *nl = s->rlen > s->rscan ? memchr(base + s->rscan, '\n', s->rlen - s->rscan) : NULL;
    if (nl) {
      size_t len = (size_t)(nl - base);
      size_t skip = len + 1;
      if (len > 0 && base[len - 1] == '\r')
        len--;
      lua_pushlstring(L, base, len);
      consume(s, skip);
      goto done;
    }
    if (s->rlen > 0 && s->rerr == UV_EOF) {
      lua_pushlstring(L, base, s->rlen); /* the last line, without "\n" */
      consume(s, s->rlen);
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

static const char *const read_names[] = {"stream:read", "stream:read_exactly", "stream:readline"};

/* ctx of a read: the mode, plus RD_RAISE for the lines iterator, which
 * raises a read error instead of returning it (a for loop would drop it). */
#define RD_RAISE 8

static int finish_read(lua_State *L, crt_stream *s, lua_KContext ctx) {
  int n = deliver(L, s, read_names[ctx & 7]);
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
  const char *fname = read_names[mode];
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

/* stream:read([max]): what has arrived, at most max bytes when given. */
static int s_read(lua_State *L) {
  size_t max = 0;
  if (!lua_isnoneornil(L, 2)) {
    int isint = 0;
    lua_Integer n = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
    if (!isint)
      return crt_typeerror(L, "stream:read", 2, "integer");
    if (n < 1)
      return crt_argerror(L, "stream:read", 2, "count must be positive");
    max = (size_t)n;
  }
  return read_common(L, RD_ANY, max);
}

static int s_read_exactly(lua_State *L) {
  int isint = 0;
  lua_Integer n = lua_type(L, 2) == LUA_TNUMBER ? lua_tointegerx(L, 2, &isint) : 0;
  if (!isint)
    return crt_typeerror(L, "stream:read_exactly", 2, "integer");
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

static int s_readline(lua_State *L) { return read_common(L, RD_LINE, 0); }

static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return read_common(L, RD_LINE | RD_RAISE, 0);
}

static int s_lines(lua_State *L) {
  check_stream(L, "stream:lines");
  lua_settop(L, 1);
  lua_pushcclosure(L, lines_iter, 1);
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
    release(s);
    lua_pushinteger(crt_task_co(t), status);
    crt_task_wake(t, 1);
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

static int s_close(lua_State *L) {
  crt_stream **box = luaL_testudata(L, 1, CRT_STREAM_MT);
  if (!box)
    return crt_typeerror(L, "stream:close", 1, "stream");
  if (*box)
    crt_stream_close(*box);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_gc(lua_State *L) {
  crt_stream **box = lua_touserdata(L, 1);
  crt_stream *s = *box;
  if (s) {
    *box = NULL;
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
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

void crt_stream_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"read", s_read},         {"read_exactly", s_read_exactly},
                                     {"readline", s_readline}, {"lines", s_lines},
                                     {"write", s_write},       {"shutdown", s_shutdown},
                                     {"close", s_close},       {NULL, NULL}};
  if (luaL_newmetatable(L, CRT_STREAM_MT)) {
    luaL_newlib(L, methods);
    lua_pushcclosure(L, s_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, s_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, s_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, s_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}
