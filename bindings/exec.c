/*
 * exec.c - external programs: crt.process.exec (run, collect the output,
 * wait) and crt.process.command (a running program with streams to its
 * standard input, output and error; the streams are stream.c's).
 *
 * Loop thread only. Children are started with uv_spawn, reaped by libuv
 * (exit callback) and never outlive the runtime: at shutdown a child still
 * running is ended by crt_proc_terminate (runtime/proc.h: SIGTERM, then
 * SIGKILL after CRT_PROC_GRACE_MS, the policy of every child of crt) and is
 * reaped before crt_close returns.
 *
 * An exec request owns several handles (the process, up to three pipes, a
 * timer); each handle's `data` is a struct starting with its close function
 * (see rt.h) and the request is freed when the last of them has closed and
 * no task holds it. A command's process object is freed when its handle has
 * closed and its Lua object has been collected, whichever comes last.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "io.h"
#include "proc.h"
#include "util.h"
#include "rt.h"
#include "scheduler.h"
#include "stream.h"

#define PROC_MT "crt.process.proc"

extern char **environ;

static crt_io *io_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(2)); }

/* ---- options shared by exec and command ---------------------------------- */

/* Check argv (1) and opts (2) and fill o. Pushes anchors that keep every
 * string o points to alive: use o only while they are on the stack. */
static void prepare(lua_State *L, const char *fname, uv_process_options_t *o) {
  memset(o, 0, sizeof *o);
  if (lua_type(L, 1) != LUA_TTABLE)
    crt_typeerror(L, fname, 1, "table");
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TTABLE)
    crt_typeerror(L, fname, 2, "table");
  lua_settop(L, 2);
  lua_newtable(L); /* 3: anchor for converted strings */
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 1)
    crt_argerror(L, fname, 1, "empty argument list");
  char **args = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *args, 0); /* 4 */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
      lua_pushfstring(L, "entry %I: string expected, got %s", i, luaL_typename(L, -1));
      crt_argerror(L, fname, 1, lua_tostring(L, -1));
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) {
      lua_pushfstring(L, "entry %I contains a NUL byte", i);
      crt_argerror(L, fname, 1, lua_tostring(L, -1));
    }
    args[i - 1] = (char *)s;
    lua_rawseti(L, 3, i);
  }
  args[n] = NULL;
  if (args[0][0] == '\0')
    crt_argerror(L, fname, 1, "empty program name");
  o->file = args[0];
  o->args = args;
  if (lua_isnil(L, 2))
    return;

  lua_getfield(L, 2, "cwd");
  if (!lua_isnil(L, -1)) {
    size_t len;
    const char *cwd = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!cwd || strlen(cwd) != len || len == 0)
      crt_argerror(L, fname, 2, "field 'cwd' must be a non-empty string without NUL bytes");
    o->cwd = cwd;
    lua_rawseti(L, 3, n + 1);
  } else {
    lua_pop(L, 1);
  }

  int clear = lua_getfield(L, 2, "clear_env") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  int tenv = lua_getfield(L, 2, "env"); /* 5 */
  if (tenv != LUA_TNIL && tenv != LUA_TTABLE)
    crt_argerror(L, fname, 2, "field 'env' must be a table");
  if (tenv == LUA_TNIL && !clear)
    return;
  lua_newtable(L); /* 6: the environment, name -> value */
  if (!clear) {
    for (char **e = environ; *e; e++) {
      const char *eq = strchr(*e, '=');
      if (!eq || eq == *e)
        continue;
      lua_pushlstring(L, *e, (size_t)(eq - *e));
      lua_pushstring(L, eq + 1);
      lua_rawset(L, 6);
    }
  }
  if (tenv == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, 5)) {
      size_t klen, vlen;
      if (lua_type(L, -2) != LUA_TSTRING)
        crt_argerror(L, fname, 2, "field 'env': names must be strings");
      const char *k = lua_tolstring(L, -2, &klen);
      if (klen == 0 || strlen(k) != klen || strchr(k, '='))
        crt_argerror(L, fname, 2, "field 'env': bad variable name (empty, or with '=' or NUL)");
      int vt = lua_type(L, -1);
      lua_pushvalue(L, -2);
      if (vt == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
        lua_pushnil(L); /* false removes the variable */
      } else if (vt == LUA_TSTRING || vt == LUA_TNUMBER) {
        lua_pushvalue(L, -2);
        const char *v = lua_tolstring(L, -1, &vlen);
        if (strlen(v) != vlen)
          crt_argerror(L, fname, 2, "field 'env': value contains a NUL byte");
      } else {
        lua_pushfstring(L, "field 'env': value of '%s' must be a string, number or false", k);
        crt_argerror(L, fname, 2, lua_tostring(L, -1));
      }
      lua_rawset(L, 6);
      lua_pop(L, 1);
    }
  }
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, 6)) {
    count++;
    lua_pop(L, 1);
  }
  char **envp = lua_newuserdatauv(L, (count + 1) * sizeof *envp, 0); /* 7 */
  size_t i = 0;
  lua_Integer slot = n + 2;
  lua_pushnil(L);
  while (lua_next(L, 6)) {
    lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
    envp[i++] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, 3, slot++);
    lua_pop(L, 1);
  }
  envp[i] = NULL;
  o->env = envp;
}

static double opt_timeout(lua_State *L, const char *fname) {
  if (lua_isnil(L, 2))
    return 0;
  lua_getfield(L, 2, "timeout");
  double s = 0;
  if (!lua_isnil(L, -1)) {
    int isnum;
    s = lua_tonumberx(L, -1, &isnum);
    if (!isnum || !(s > 0))
      crt_argerror(L, fname, 2, "field 'timeout' must be a number > 0");
  }
  lua_pop(L, 1);
  return s;
}

/* The stdin data of exec: a string or nil. */
static int opt_stdin(lua_State *L, const char *fname) {
  if (lua_isnil(L, 2))
    return 0;
  int t = lua_getfield(L, 2, "stdin");
  lua_pop(L, 1);
  if (t == LUA_TNIL)
    return 0;
  if (t != LUA_TSTRING)
    crt_argerror(L, fname, 2, "field 'stdin' must be a string");
  return 1;
}

enum { MODE_PIPE, MODE_INHERIT, MODE_NULL };

static int opt_mode(lua_State *L, const char *fname, const char *field) {
  if (lua_isnil(L, 2))
    return MODE_PIPE;
  lua_getfield(L, 2, field);
  const char *m = lua_tostring(L, -1);
  int mode = -1;
  if (lua_isnil(L, -1) || (m && strcmp(m, "pipe") == 0))
    mode = MODE_PIPE;
  else if (m && strcmp(m, "inherit") == 0)
    mode = MODE_INHERIT;
  else if (m && strcmp(m, "null") == 0)
    mode = MODE_NULL;
  lua_pop(L, 1);
  if (mode < 0) {
    lua_pushfstring(L, "field '%s' must be \"pipe\", \"inherit\" or \"null\"", field);
    crt_argerror(L, fname, 2, lua_tostring(L, -1));
  }
  return mode;
}

static void push_exit(lua_State *L, int64_t status, int termsig) {
  if (termsig) {
    lua_pushnil(L);
    crt_io_pushsignal(L, termsig);
  } else {
    lua_pushinteger(L, (lua_Integer)status);
    lua_pushnil(L);
  }
}

/* ---- exec ------------------------------------------------------------------- */

typedef struct exec_op exec_op;

typedef struct epipe {
  crt_handle_close_fn close_fn; /* must stay first */
  uv_pipe_t pipe;
  exec_op *op;
  crt_buf buf;
  int open; /* initialised and not yet closing */
  int eof;
} epipe;

typedef struct etimer {
  crt_handle_close_fn close_fn; /* must stay first */
  uv_timer_t timer;
  exec_op *op;
  int open;
} etimer;

struct exec_op {
  crt_handle_close_fn close_fn; /* of proc; must stay first */
  uv_process_t proc;
  crt_io *io;
  crt_task *t; /* the waiting task; NULL once it went away */
  int task_holds;
  int handles; /* handles whose close callback has not run */
  epipe in, out, err;
  etimer tm;
  uv_write_t wreq;
  int dref; /* the pinned stdin string */
  int proc_open, exited, timed_out, finished;
  int64_t status;
  int termsig;
};

static void op_maybe_free(exec_op *op) {
  if (op->handles > 0 || op->task_holds)
    return;
  if (op->dref != LUA_NOREF)
    luaL_unref(crt_lua(op->io->rt), LUA_REGISTRYINDEX, op->dref);
  crt_buf_free(&op->out.buf);
  crt_buf_free(&op->err.buf);
  free(op);
}

static void handle_closed(uv_handle_t *h) {
  /* every data struct starts with its close function, then the handle */
  exec_op *op;
  if (h->type == UV_PROCESS)
    op = h->data;
  else if (h->type == UV_TIMER)
    op = ((etimer *)h->data)->op;
  else
    op = ((epipe *)h->data)->op;
  op->handles--;
  op_maybe_free(op);
}

static void pipe_close(epipe *p) {
  if (p->open) {
    p->open = 0;
    uv_close((uv_handle_t *)&p->pipe, handle_closed);
  }
}

static void timer_close(etimer *tm) {
  if (tm->open) {
    tm->open = 0;
    uv_close((uv_handle_t *)&tm->timer, handle_closed);
  }
}

/* Read what a dead child left in a pipe (non-blocking), then close it: used
 * when waiting for EOF could take forever (a grandchild holds the pipe). */
static void pipe_drain(epipe *p) {
  if (!p->open)
    return;
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&p->pipe, &fd) == 0) {
    char *slab = p->op->io->slab;
    for (;;) {
      ssize_t n = read(fd, slab, CRT_IO_SLAB);
      if (n > 0) {
        if (crt_buf_append(&p->buf, slab, (size_t)n) != 0)
          break;
      } else if (!(n < 0 && errno == EINTR)) {
        break;
      }
    }
  }
  p->eof = 1;
  pipe_close(p);
}

static void exec_check_done(exec_op *op) {
  if (op->finished || !op->exited || op->out.open || op->err.open)
    return;
  op->finished = 1;
  timer_close(&op->tm);
  pipe_close(&op->in);
  if (op->t) {
    crt_task *t = op->t;
    op->t = NULL;
    crt_task_wake(t, 0);
  }
}

static void exec_exit_cb(uv_process_t *h, int64_t status, int termsig) {
  exec_op *op = h->data;
  op->exited = 1;
  op->status = status;
  op->termsig = termsig;
  op->proc_open = 0;
  uv_close((uv_handle_t *)h, handle_closed);
  if (op->timed_out) {
    pipe_drain(&op->out);
    pipe_drain(&op->err);
  }
  exec_check_done(op);
}

static void exec_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  epipe *p = h->data;
  (void)suggested;
  buf->base = p->op->io->slab;
  buf->len = CRT_IO_SLAB;
}

static void exec_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  epipe *p = st->data;
  if (nread > 0) {
    if (crt_buf_append(&p->buf, buf->base, (size_t)nread) == 0)
      return;
  } else if (nread == 0) {
    return;
  }
  p->eof = 1; /* EOF, a read error or no memory: this output is complete */
  pipe_close(p);
  exec_check_done(p->op);
}

static void exec_write_cb(uv_write_t *req, int status) {
  exec_op *op = req->data;
  (void)status; /* EPIPE when the program does not read all of its input */
  pipe_close(&op->in);
}

static void exec_timer_cb(uv_timer_t *h) {
  exec_op *op = ((etimer *)h->data)->op;
  op->timed_out = 1;
  timer_close(&op->tm);
  if (!op->exited) {
    uv_process_kill(&op->proc, SIGKILL);
  } else {
    /* The program ended, but something it started holds its output open. */
    pipe_drain(&op->out);
    pipe_drain(&op->err);
    exec_check_done(op);
  }
}

/* Close every handle (the process handle closes once the child is reaped). */
static void exec_abandon(exec_op *op) {
  if (op->proc_open && !op->exited)
    uv_process_kill(&op->proc, SIGKILL);
  pipe_close(&op->in);
  pipe_close(&op->out);
  pipe_close(&op->err);
  timer_close(&op->tm);
}

static void exec_unpark(crt_task *t, void *data) {
  exec_op *op = data;
  (void)t;
  op->t = NULL;
  op->task_holds = 0;
  exec_abandon(op);
  op_maybe_free(op);
}

static void exec_proc_close_fn(uv_handle_t *h) {
  exec_op *op = h->data;
  if (op->proc_open && !op->exited)
    crt_proc_terminate(&op->proc.pid, 1); /* SIGTERM, the grace, SIGKILL, reaped */
  op->proc_open = 0;
  exec_abandon(op);
  if (!uv_is_closing(h))
    uv_close(h, handle_closed);
}

static void epipe_close_fn(uv_handle_t *h) { pipe_close(h->data); }
static void etimer_close_fn(uv_handle_t *h) { timer_close(h->data); }

static int exec_result(lua_State *L) {
  exec_op *op = lua_touserdata(L, 1);
  lua_createtable(L, 0, 5);
  push_exit(L, op->status, op->termsig);
  lua_setfield(L, -3, "signal");
  lua_setfield(L, -2, "code");
  lua_pushlstring(L, op->out.buf.data ? op->out.buf.data : "", op->out.buf.len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, op->err.buf.data ? op->err.buf.data : "", op->err.buf.len);
  lua_setfield(L, -2, "stderr");
  lua_pushboolean(L, op->timed_out);
  lua_setfield(L, -2, "timed_out");
  return 1;
}

static int exec_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  exec_op *op = (exec_op *)ctx;
  int n;
  int st = crt_io_pcall(L, exec_result, op, &n);
  op->task_holds = 0;
  op_maybe_free(op);
  if (st != LUA_OK)
    return lua_error(L);
  return n;
}

static int pipe_init(exec_op *op, epipe *p, uv_stdio_container_t *c, int child_flags) {
  p->close_fn = epipe_close_fn;
  p->op = op;
  int r = uv_pipe_init(crt_rt_loop(op->io->rt), &p->pipe, 0);
  if (r < 0)
    return r;
  p->pipe.data = p;
  p->open = 1;
  op->handles++;
  c->flags = UV_CREATE_PIPE | child_flags;
  c->data.stream = (uv_stream_t *)&p->pipe;
  return 0;
}

static int l_exec(lua_State *L) {
  static const char fname[] = "crt.process.exec";
  uv_process_options_t o;
  prepare(L, fname, &o);
  double timeout = opt_timeout(L, fname);
  int has_stdin = opt_stdin(L, fname);
  crt_task *t = crt_task_require(L, fname);
  crt_io *io = io_of(L);
  int dref = LUA_NOREF;
  if (has_stdin) {
    lua_getfield(L, 2, "stdin");
    dref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  exec_op *op = calloc(1, sizeof *op);
  if (!op) {
    luaL_unref(L, LUA_REGISTRYINDEX, dref);
    return crt_pushfail(L, UV_ENOMEM, o.file);
  }
  op->close_fn = exec_proc_close_fn;
  op->io = io;
  op->dref = dref;
  op->tm.close_fn = etimer_close_fn;
  op->tm.op = op;
  uv_stdio_container_t stdio[3];
  memset(stdio, 0, sizeof stdio);
  stdio[0].flags = UV_IGNORE;
  int r = 0;
  if (has_stdin)
    r = pipe_init(op, &op->in, &stdio[0], UV_READABLE_PIPE);
  if (r == 0)
    r = pipe_init(op, &op->out, &stdio[1], UV_WRITABLE_PIPE);
  if (r == 0)
    r = pipe_init(op, &op->err, &stdio[2], UV_WRITABLE_PIPE);
  if (r == 0) {
    o.stdio = stdio;
    o.stdio_count = 3;
    o.exit_cb = exec_exit_cb;
    op->proc.data = op;
    r = uv_spawn(crt_rt_loop(io->rt), &op->proc, &o);
    op->handles++; /* the process handle must be closed even when spawn failed */
    if (r < 0) {
      uv_close((uv_handle_t *)&op->proc, handle_closed);
    } else {
      op->proc_open = 1;
    }
  }
  if (r < 0) {
    exec_abandon(op); /* closes the pipes; op is freed by the last close */
    op_maybe_free(op);
    return crt_pushfail(L, r, o.file);
  }
  op->task_holds = 1;
  op->t = t;
  uv_read_start((uv_stream_t *)&op->out.pipe, exec_alloc, exec_read_cb);
  uv_read_start((uv_stream_t *)&op->err.pipe, exec_alloc, exec_read_cb);
  if (has_stdin) {
    size_t len;
    lua_getfield(L, 2, "stdin");
    const char *data = lua_tolstring(L, -1, &len);
    lua_pop(L, 1); /* still pinned by op->dref */
    op->wreq.data = op;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (len == 0 || uv_write(&op->wreq, (uv_stream_t *)&op->in.pipe, &b, 1, exec_write_cb) < 0)
      pipe_close(&op->in);
  }
  if (timeout > 0) {
    if (uv_timer_init(crt_rt_loop(io->rt), &op->tm.timer) == 0) {
      op->tm.timer.data = &op->tm;
      op->tm.open = 1;
      op->handles++;
      double ms = timeout * 1000.0;
      uv_timer_start(&op->tm.timer, exec_timer_cb, ms > 1e15 ? (uint64_t)1e15 : (uint64_t)ms + 1,
                     0);
    }
  }
  return crt_task_park(L, t, exec_unpark, op, exec_k, (lua_KContext)op);
}

/* ---- command ------------------------------------------------------------------ */

typedef struct proc {
  crt_handle_close_fn close_fn; /* must stay first */
  uv_process_t h;
  crt_io *io;
  struct proc **box;
  crt_task *waiter;
  int pid;
  int running; /* spawned and not yet reaped */
  int handle_closed;
  int64_t status;
  int termsig;
} proc;

static void proc_close_cb(uv_handle_t *h) {
  proc *p = h->data;
  p->handle_closed = 1;
  if (!p->box)
    free(p);
}

static void proc_exit_cb(uv_process_t *h, int64_t status, int termsig) {
  proc *p = h->data;
  p->running = 0;
  p->status = status;
  p->termsig = termsig;
  uv_close((uv_handle_t *)h, proc_close_cb);
  if (p->waiter) {
    crt_task *t = p->waiter;
    p->waiter = NULL;
    crt_task_wake(t, 0);
  }
}

static void proc_close_fn(uv_handle_t *h) {
  proc *p = h->data;
  if (p->running)
    crt_proc_terminate(&p->pid, 1); /* SIGTERM, the grace, SIGKILL, reaped */
  p->running = 0;
  if (p->waiter) {
    crt_task *t = p->waiter; /* cannot happen: tasks end before handles close */
    p->waiter = NULL;
    crt_task_wake(t, 0);
  }
  if (!uv_is_closing(h))
    uv_close(h, proc_close_cb);
}

static proc *check_proc(lua_State *L, const char *fname) {
  return crt_checkptr(L, 1, PROC_MT, "process", fname);
}

static int proc_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  proc *p = *(proc **)lua_touserdata(L, 1);
  push_exit(L, p->status, p->termsig);
  return 2;
}

static void proc_wait_unpark(crt_task *t, void *data) {
  proc *p = data;
  (void)t;
  p->waiter = NULL;
  if (!uv_is_closing((uv_handle_t *)&p->h))
    uv_unref((uv_handle_t *)&p->h);
}

static int p_wait(lua_State *L) {
  static const char fname[] = "proc:wait";
  proc *p = check_proc(L, fname);
  crt_task *t = crt_task_require(L, fname);
  if (!p->running) {
    push_exit(L, p->status, p->termsig);
    return 2;
  }
  if (p->waiter)
    return crt_errorf(L, fname, "another task is already waiting for this process");
  lua_settop(L, 1);
  p->waiter = t;
  uv_ref((uv_handle_t *)&p->h);
  return crt_task_park(L, t, proc_wait_unpark, p, proc_wait_k, 0);
}

static int p_kill(lua_State *L) {
  static const char fname[] = "proc:kill";
  proc *p = check_proc(L, fname);
  int signum = SIGTERM;
  if (lua_type(L, 2) == LUA_TNUMBER && lua_tointeger(L, 2) == 0 && lua_isinteger(L, 2))
    signum = 0; /* kill(0): is it still running? */
  else if (!lua_isnoneornil(L, 2))
    signum = crt_io_checksignal(L, 2, fname);
  if (!p->running) {
    lua_pushnil(L);
    lua_pushliteral(L, "proc:kill: the process has exited");
    lua_pushliteral(L, "ESRCH");
    return 3;
  }
  int r = uv_process_kill(&p->h, signum);
  if (r < 0)
    return crt_pushfail(L, r, fname);
  lua_pushboolean(L, 1);
  return 1;
}

static int p_gc(lua_State *L) {
  proc **box = lua_touserdata(L, 1);
  proc *p = *box;
  if (p) {
    *box = NULL;
    p->box = NULL;
    if (p->handle_closed)
      free(p); /* else the exit (or shutdown) closes the handle, which frees p */
  }
  return 0;
}

static int p_index(lua_State *L) {
  proc *p = *(proc **)lua_touserdata(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "pid") == 0) {
    lua_pushinteger(L, p->pid);
    return 1;
  }
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  for (int i = 0; k && i < 3; i++)
    if (strcmp(k, names[i]) == 0) {
      lua_getiuservalue(L, 1, i + 1);
      return 1;
    }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int p_tostring(lua_State *L) {
  proc *p = *(proc **)lua_touserdata(L, 1);
  lua_pushfstring(L, "crt.process: %p (pid %d, %s)", (void *)p, p->pid,
                  p->running ? "running" : "exited");
  return 1;
}

static int l_command(lua_State *L) {
  static const char fname[] = "crt.process.command";
  uv_process_options_t o;
  prepare(L, fname, &o);
  int modes[3] = {opt_mode(L, fname, "stdin"), opt_mode(L, fname, "stdout"),
                  opt_mode(L, fname, "stderr")};
  crt_io *io = io_of(L);
  /* Lua objects first (they may raise), then the handles. */
  proc **pbox = lua_newuserdatauv(L, sizeof *pbox, 3);
  *pbox = NULL;
  luaL_setmetatable(L, PROC_MT);
  int pidx = lua_gettop(L);
  crt_stream **boxes[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++)
    if (modes[i] == MODE_PIPE) {
      boxes[i] = crt_stream_newbox(L);
      lua_setiuservalue(L, pidx, i + 1);
    }
  proc *p = calloc(1, sizeof *p);
  if (!p)
    return crt_pushfail(L, UV_ENOMEM, o.file);
  p->close_fn = proc_close_fn;
  p->io = io;
  uv_stdio_container_t stdio[3];
  crt_stream *streams[3] = {NULL, NULL, NULL};
  int r = 0;
  for (int i = 0; i < 3; i++) {
    if (modes[i] == MODE_INHERIT) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else if (modes[i] == MODE_NULL) {
      stdio[i].flags = UV_IGNORE;
    } else {
      if (r == 0)
        streams[i] = crt_stream_new(io, CRT_STREAM_PIPE, &r);
      stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = streams[i] ? &streams[i]->u.stream : NULL;
    }
  }
  if (r == 0) {
    o.stdio = stdio;
    o.stdio_count = 3;
    o.exit_cb = proc_exit_cb;
    p->h.data = p;
    r = uv_spawn(crt_rt_loop(io->rt), &p->h, &o);
    if (r < 0) {
      p->box = NULL;
      uv_close((uv_handle_t *)&p->h, proc_close_cb); /* frees p */
    }
  } else {
    free(p);
  }
  if (r != 0) {
    for (int i = 0; i < 3; i++)
      if (streams[i])
        crt_stream_abort(streams[i]);
    return crt_pushfail(L, r, o.file);
  }
  p->pid = p->h.pid;
  p->running = 1;
  uv_unref((uv_handle_t *)&p->h);
  *pbox = p;
  p->box = pbox;
  for (int i = 0; i < 3; i++)
    if (streams[i]) {
      streams[i]->readable = i != 0;
      streams[i]->writable = i == 0;
      crt_stream_attach(boxes[i], streams[i]);
    }
  lua_pushvalue(L, pidx);
  return 1;
}

/* ---- registration ---------------------------------------------------------- */

void crt_open_exec(lua_State *L, crt_runtime *rt) {
  crt_io *io = crt_io_get(L, rt);
  crt_io_ignore_sigpipe();
  crt_stream_open(L);
  static const luaL_Reg methods[] = {{"wait", p_wait}, {"kill", p_kill}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
      {"__index", p_index}, {"__gc", p_gc}, {"__tostring", p_tostring}, {NULL, NULL}};
  /* __index looks up pid and the streams, then the methods (its upvalue). */
  luaL_newlib(L, methods);
  crt_newclass(L, PROC_MT, NULL, meta, 1);
  if (lua_getfield(L, -1, "process") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "process");
  }
  static const luaL_Reg funcs[] = {{"exec", l_exec}, {"command", l_command}, {NULL, NULL}};
  lua_pushlightuserdata(L, rt);
  lua_pushlightuserdata(L, io);
  luaL_setfuncs(L, funcs, 2);
  lua_pop(L, 1);
}
