/*
 * io.h - what the asynchronous I/O bindings (crt.fs, crt.net, crt.signal,
 * crt.process.exec/command) share: their registration functions, the
 * per-runtime I/O context and small helpers.
 *
 * Loop thread only. See docs/io.md for the Lua API and the choices behind it.
 */
#ifndef CRT_IO_H
#define CRT_IO_H

#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "buf.h"
#include "list.h"
#include "rt.h"

struct crt_stream;
struct crt_sigwatch;

/* Registration: each sets one field (fs, net, signal) of the crt table at the
 * top of L's stack; crt_open_exec adds exec and command to crt.process
 * (creating that table when it is absent). */
void crt_open_fs(lua_State *L, crt_runtime *rt);
void crt_open_net(lua_State *L, crt_runtime *rt);
void crt_open_signal(lua_State *L, crt_runtime *rt);
void crt_open_exec(lua_State *L, crt_runtime *rt);

/* Bytes libuv reads into at once (streams, pipes, datagrams). */
#define CRT_IO_SLAB 65536

struct crt_io;
struct crt_io_timer {
  crt_handle_close_fn close_fn;
  uv_timer_t timer;
  struct crt_io *io;
};

/* A handle that can wake a task by itself although no task waits on it (a
 * crt.signal.on watcher, a crt.net.serve server): it is ref'd, so that the
 * runtime does not report a deadlock while tasks wait on a channel it may
 * feed; when the runtime closes, the context unrefs it so that it does not
 * hold up the final run of the loop. */
typedef struct crt_io_waker {
  uv_handle_t *h; /* NULL when not registered */
  crt_link link;  /* in io->wakers */
} crt_io_waker;

/* One per runtime, created by the first crt_open_* call and owned by the Lua
 * state (a userdata in the registry), so that finalizers running while the
 * state closes still find it. */
typedef struct crt_io {
  crt_handle_close_fn close_fn; /* of `watch` (must stay first) */
  uv_prepare_t watch;           /* notices the runtime closing (see io.c) */
  struct crt_io_timer grace;    /* bounds the final flush of pending writes */
  crt_runtime *rt;
  crt_list streams; /* every stream whose handle is open (crt_stream.link) */
  crt_list wakers;  /* crt_io_waker.link */
  int closing_seen;
  /* crt.signal: the default SIGINT watcher (crt binary only) and how many
   * user watchers of SIGINT replace it now. */
  struct crt_sigwatch *sigint_default;
  int sigint_users;
  /* Where libuv reads into; data is copied out at once. */
  char slab[CRT_IO_SLAB];
} crt_io;

/* The runtime's I/O context (created on first use). */
crt_io *crt_io_get(lua_State *L, crt_runtime *rt);

/* Register / forget a waker (see crt_io_waker); add refs the handle. */
void crt_io_waker_add(crt_io *io, crt_io_waker *w, uv_handle_t *h);
void crt_io_waker_remove(crt_io *io, crt_io_waker *w);

/* A string argument that can be a path or a host name: no NUL byte. */
const char *crt_io_checkname(lua_State *L, int arg, const char *fname, size_t *len);

/* Signals by name ("SIGINT") or number. Raises on an unknown one. */
int crt_io_checksignal(lua_State *L, int arg, const char *fname);
/* "SIGINT" for 2, or NULL when the number has no name here. */
const char *crt_io_signame(int signum);
/* Push the name of signum, or the number when it has none. */
void crt_io_pushsignal(lua_State *L, int signum);

/* Run fn(ud) under lua_pcall on L and leave its results on the stack (their
 * number in *nres), or the error value. The bindings build results this way
 * while a request still owns memory, release the request, and only then
 * return or re-raise: nothing is leaked when pushing runs out of memory. */
int crt_io_pcall(lua_State *L, lua_CFunction fn, void *ud, int *nres);

/* Push buf[0..len) as a string, then free(buf), also when pushing fails
 * (raises after freeing). */
void crt_io_pushbuf(lua_State *L, char *buf, size_t len);

/* Ignore SIGPIPE (writes to a closed socket or pipe then fail with EPIPE
 * instead of killing the process), unless the host set a handler. */
void crt_io_ignore_sigpipe(void);

/* The pointer in the box (a userdata holding a T *) at idx, taken out: the
 * box is left empty. For a finalizer, which then detaches the object. */
static inline void *crt_io_unbox(lua_State *L, int idx) {
  void **box = lua_touserdata(L, idx);
  void *p = *box;
  *box = NULL;
  return p;
}

/* The close method of a boxed object: close(obj) when the box at index 1
 * (checked: crt_checkptr) holds one; returns 1 with true pushed. close must
 * be harmless on an object already closing. */
int crt_io_close_method(lua_State *L, const char *mt, const char *tname, const char *fname,
                        void (*close)(void *obj));

/* Set field `name` of the crt table at the top of L's stack to a new table
 * of funcs; every function gets rt and io (light userdata) as upvalues 1
 * and 2. */
void crt_io_newlib(lua_State *L, const char *name, const luaL_Reg *funcs, crt_runtime *rt,
                   crt_io *io);

/* "127.0.0.1:80" or "[::1]:80" (host and port of sa). */
void crt_io_format_addr(const struct sockaddr *sa, char *out, size_t size);
/* The address of sa as a string and its port. */
void crt_io_addr_parts(const struct sockaddr *sa, char *host, size_t size, int *port);

#endif
