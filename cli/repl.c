/*
 * repl.c - the reader of standard input behind `crt -i`: reads it through the
 * runtime's libuv loop (crt_loop), so that while the prompt waits for a line
 * every task, timer and socket keeps running. The prompt itself is Lua
 * (cli/runner.lua); this file gives it a table of two functions:
 *
 *   stdin.read(deliver) -> line | false at end of input | nothing
 *     A line that is already there (or the end of input) is returned at
 *     once. Otherwise reading starts and nothing is returned: deliver(line)
 *     or deliver(false) is called later, from the loop, on the main state;
 *     the caller waits meanwhile (on a crt channel that deliver feeds).
 *   stdin.stop()
 *     The waiting caller gave up (it was cancelled): stop reading.
 *
 * Loop thread only. One reader per process; its handle is active (and keeps
 * the loop alive) only while a line is awaited. It is the CLI's own handle,
 * not the runtime's: main.c closes it (crt_cli_repl_close) before crt_close.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <uv.h>

#include <crt.h>

typedef struct reader {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tty_t tty;
    uv_pipe_t pipe;
  } h;
  lua_State *L; /* the runtime's main state: deliver runs there */
  uv_loop_t *loop;
  int open, eof, reading;
  int file;    /* stdin is a regular file: read it directly (epoll cannot) */
  int deliver; /* registry reference of the pending deliver, or LUA_NOREF */
  char *buf;   /* bytes read and not yet returned as lines */
  size_t len, cap;
} reader;

static reader *the_reader;
static int closed; /* crt_cli_repl_close ran: the input has ended */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out) {
  (void)h;
  (void)hint;
  static char chunk[4096];
  out->base = chunk;
  out->len = sizeof chunk;
}

static int has_line(reader *r) { return r->eof || (r->len && memchr(r->buf, '\n', r->len)); }

static void stop_reading(reader *r) {
  if (r->reading) {
    uv_read_stop(&r->h.stream);
    r->reading = 0;
  }
}

/* Push the next line (without its "\n" or "\r\n"), or false at the end of
 * input; has_line(r) must be true. */
static void push_line(lua_State *L, reader *r) {
  char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
  if (nl) {
    size_t n = (size_t)(nl - r->buf);
    lua_pushlstring(L, r->buf, n > 0 && r->buf[n - 1] == '\r' ? n - 1 : n);
    memmove(r->buf, nl + 1, r->len - n - 1);
    r->len -= n + 1;
  } else if (r->len > 0) {
    lua_pushlstring(L, r->buf, r->len);
    r->len = 0;
  } else {
    lua_pushboolean(L, 0);
  }
}

/* Hand a complete line (or false at EOF) to the pending deliver, if any. */
static void deliver(reader *r) {
  if (r->deliver == LUA_NOREF || !has_line(r))
    return;
  stop_reading(r);
  lua_State *L = r->L;
  lua_checkstack(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->deliver);
  luaL_unref(L, LUA_REGISTRYINDEX, r->deliver);
  r->deliver = LUA_NOREF;
  push_line(L, r);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) { /* only out of memory */
    fprintf(stderr, "crt: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* Append n bytes read; a failed allocation ends the input. */
static void append(reader *r, const char *p, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = (r->len + n) * 2;
    char *nb = realloc(r->buf, cap);
    if (!nb) {
      r->eof = 1;
      return;
    }
    r->buf = nb;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, p, n);
  r->len += n;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  reader *r = s->data;
  if (n < 0)
    r->eof = 1;
  else if (n > 0)
    append(r, b->base, (size_t)n);
  deliver(r);
}

static void on_close(uv_handle_t *h) {
  reader *r = h->data;
  free(r->buf);
  free(r);
}

/* The reader, opened on first use; NULL when standard input cannot be read
 * through the loop. */
static reader *get_reader(lua_State *L) {
  if (the_reader)
    return the_reader;
  reader *r = calloc(1, sizeof *r);
  if (!r)
    luaL_error(L, "readline: not enough memory");
  r->L = lua_touserdata(L, lua_upvalueindex(1));
  r->loop = lua_touserdata(L, lua_upvalueindex(2));
  r->deliver = LUA_NOREF;
  int rc = 0;
  uv_handle_type type = uv_guess_handle(0);
  if (type == UV_FILE || type == UV_UNKNOWN_HANDLE)
    r->file = 1;
  else if (type == UV_TTY)
    rc = uv_tty_init(r->loop, &r->h.tty, 0, 1);
  else {
    rc = uv_pipe_init(r->loop, &r->h.pipe, 0);
    if (rc == 0)
      rc = uv_pipe_open(&r->h.pipe, 0);
  }
  if (rc != 0) {
    free(r);
    return NULL;
  }
  r->h.handle.data = r;
  r->open = !r->file;
  the_reader = r;
  return r;
}

/* stdin.read(deliver) -> line | false | nothing (see the top comment) */
static int l_read(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  reader *r = closed ? NULL : get_reader(L);
  if (!r) {
    lua_pushboolean(L, 0);
    return 1;
  }
  /* A regular file never makes us wait long: read it here, blocking. */
  while (r->file && !has_line(r)) {
    char chunk[4096];
    ssize_t n = read(0, chunk, sizeof chunk);
    if (n <= 0)
      r->eof = 1;
    else
      append(r, chunk, (size_t)n);
  }
  if (!has_line(r) && !r->reading && uv_read_start(&r->h.stream, on_alloc, on_read) == 0)
    r->reading = 1;
  if (!has_line(r) && !r->reading)
    r->eof = 1;
  if (has_line(r)) { /* a line is ready now: take it without waiting */
    stop_reading(r);
    push_line(L, r);
    return 1;
  }
  luaL_unref(L, LUA_REGISTRYINDEX, r->deliver);
  lua_settop(L, 1);
  r->deliver = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* stdin.stop(): the caller no longer waits for the line it asked for. */
static int l_stop(lua_State *L) {
  reader *r = the_reader;
  if (r) {
    stop_reading(r);
    luaL_unref(L, LUA_REGISTRYINDEX, r->deliver);
    r->deliver = LUA_NOREF;
  }
  return 0;
}

/* Close the reader (before crt_close: the handle is the CLI's, not the
 * runtime's). Reads after this see the end of input. */
void crt_cli_repl_close(void) {
  reader *r = the_reader;
  the_reader = NULL;
  closed = 1;
  if (!r)
    return;
  luaL_unref(r->L, LUA_REGISTRYINDEX, r->deliver);
  if (r->open && !uv_is_closing(&r->h.handle))
    uv_close(&r->h.handle, on_close);
  else if (!r->open) {
    free(r->buf);
    free(r);
  }
}

/* Push the stdin table for rt's state (L = crt_lua(rt)). */
void crt_cli_repl_push(lua_State *L, crt_runtime *rt) {
  static const luaL_Reg fns[] = {{"read", l_read}, {"stop", l_stop}, {NULL, NULL}};
  lua_createtable(L, 0, 2);
  lua_pushlightuserdata(L, L);
  lua_pushlightuserdata(L, crt_loop(rt));
  luaL_setfuncs(L, fns, 2);
}
