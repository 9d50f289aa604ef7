/*
 * repl.c - the line reader behind `crt -i`: reads standard input through
 * libuv, so that while the prompt waits for a line every task, timer and
 * socket keeps running.
 *
 * Loop thread only. One reader per runtime; its handle is active (and keeps
 * the loop alive) only while a task waits for a line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "rt.h"
#include "scheduler.h"
#include "util.h"

typedef struct reader {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tty_t tty;
    uv_pipe_t pipe;
  } h;
  int open, eof, reading;
  int file;  /* stdin is a regular file: read it directly (epoll cannot) */
  char *buf; /* bytes read and not yet returned as lines */
  size_t len, cap;
  crt_task *waiter;
} reader;

static reader *the_reader;

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out) {
  (void)h;
  (void)hint;
  static char chunk[4096];
  out->base = chunk;
  out->len = sizeof chunk;
}

/* Hand a complete line (or nil at EOF) to the waiting task, if any. */
static void deliver(reader *r) {
  if (!r->waiter)
    return;
  char *nl = memchr(r->buf, '\n', r->len);
  if (!nl && !r->eof)
    return;
  crt_task *t = r->waiter;
  lua_State *co = crt_task_co(t);
  lua_checkstack(co, 1);
  if (nl) {
    size_t n = (size_t)(nl - r->buf);
    lua_pushlstring(co, r->buf, n > 0 && r->buf[n - 1] == '\r' ? n - 1 : n);
    memmove(r->buf, nl + 1, r->len - n - 1);
    r->len -= n + 1;
  } else if (r->len > 0) {
    lua_pushlstring(co, r->buf, r->len);
    r->len = 0;
  } else {
    lua_pushnil(co);
  }
  r->waiter = NULL;
  if (r->reading) {
    uv_read_stop(&r->h.stream);
    r->reading = 0;
  }
  crt_task_wake(t, 1);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  reader *r = s ? s->data : the_reader;
  if (n < 0) {
    r->eof = 1;
  } else if (n > 0) {
    if (r->len + (size_t)n > r->cap) {
      size_t cap = (r->len + (size_t)n) * 2;
      char *nb = realloc(r->buf, cap);
      if (!nb) {
        r->eof = 1;
        deliver(r);
        return;
      }
      r->buf = nb;
      r->cap = cap;
    }
    memcpy(r->buf + r->len, b->base, (size_t)n);
    r->len += (size_t)n;
  }
  deliver(r);
}

static void unpark(crt_task *t, void *data) {
  reader *r = data;
  (void)t;
  r->waiter = NULL;
  if (r->reading) {
    uv_read_stop(&r->h.stream);
    r->reading = 0;
  }
}

static void on_close(uv_handle_t *h) {
  reader *r = h->data;
  free(r->buf);
  free(r);
}

/* readline(prompt) -> line | nil at end of input */
static int l_readline(lua_State *L) {
  crt_runtime *rt = lua_touserdata(L, lua_upvalueindex(1));
  crt_task *t = crt_task_require(L, "readline");
  const char *prompt = luaL_optstring(L, 1, "");
  fputs(prompt, stdout);
  fflush(stdout);
  reader *r = the_reader;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r)
      return luaL_error(L, "readline: not enough memory");
    int rc = 0;
    uv_handle_type type = uv_guess_handle(0);
    if (type == UV_FILE || type == UV_UNKNOWN_HANDLE)
      r->file = 1;
    else if (type == UV_TTY)
      rc = uv_tty_init(crt_rt_loop(rt), &r->h.tty, 0, 1);
    else {
      rc = uv_pipe_init(crt_rt_loop(rt), &r->h.pipe, 0);
      if (rc == 0)
        rc = uv_pipe_open(&r->h.pipe, 0);
    }
    if (rc != 0) {
      free(r);
      lua_pushnil(L);
      return 1;
    }
    r->h.handle.data = r;
    r->open = !r->file;
    the_reader = r;
  }
  /* A regular file never makes us wait long: read it here, blocking. */
  while (r->file && !r->eof && !memchr(r->buf ? r->buf : "", '\n', r->len)) {
    char chunk[4096];
    ssize_t n = read(0, chunk, sizeof chunk);
    if (n <= 0) {
      r->eof = 1;
      break;
    }
    uv_buf_t b = uv_buf_init(chunk, (unsigned)n);
    int waiting = r->reading;
    r->reading = 0;
    on_read(NULL, n, &b);
    r->reading = waiting;
  }
  r->waiter = t;
  if (!r->eof && !memchr(r->buf ? r->buf : "", '\n', r->len)) {
    if (!r->reading && uv_read_start(&r->h.stream, on_alloc, on_read) == 0)
      r->reading = 1;
    if (!r->reading)
      r->eof = 1;
  }
  lua_State *co = crt_task_co(t);
  (void)co;
  if (r->eof || memchr(r->buf ? r->buf : "", '\n', r->len)) {
    /* A line is ready now: take it without parking. */
    r->waiter = NULL;
    if (r->reading) {
      uv_read_stop(&r->h.stream);
      r->reading = 0;
    }
    char *nl = r->len && r->buf ? memchr(r->buf, '\n', r->len) : NULL;
    if (nl) {
      size_t n = (size_t)(nl - r->buf);
      lua_pushlstring(L, r->buf, n > 0 && r->buf[n - 1] == '\r' ? n - 1 : n);
      memmove(r->buf, nl + 1, r->len - n - 1);
      r->len -= n + 1;
    } else if (r->len) {
      lua_pushlstring(L, r->buf, r->len);
      r->len = 0;
    } else {
      lua_pushnil(L);
    }
    return 1;
  }
  return crt_task_park(L, t, unpark, r, NULL, 0);
}

void crt_repl_close(void) {
  reader *r = the_reader;
  the_reader = NULL;
  if (r && r->open && !uv_is_closing(&r->h.handle))
    uv_close(&r->h.handle, on_close);
  else if (r && !r->open) {
    free(r->buf);
    free(r);
  }
}

/* Push the readline function for rt. */
void crt_repl_push_readline(lua_State *L, crt_runtime *rt) {
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, l_readline, 1);
}
