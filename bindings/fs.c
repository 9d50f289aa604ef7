/*
 * fs.c - crt.fs: files and directories through libuv's fs requests, which
 * run on libuv's thread pool; the calling task waits, the loop does not.
 *
 * Loop thread only (the request's work runs on a pool thread, but only libuv
 * touches it there; the callbacks and everything here run on the loop).
 *
 * One fs_op per call. Multi-step calls (read a whole file: open, fstat, read
 * chunks, close) chain their steps in the callback and wake the task at the
 * end. A cancelled task's request is uv_cancel'led; whether or not that
 * succeeds, the callback runs later, sees that no task waits (op->t NULL),
 * closes any descriptor the call had opened and frees the request.
 *
 * Results are built in the task (continuation), under lua_pcall while the
 * request still owns its buffers, then the request is freed: nothing leaks
 * when building a result runs out of memory.
 *
 * A file object (crt.fs.open) boxes a malloc'd lfile; at most one operation
 * runs on it at a time (a second one raises). Its descriptor's own position
 * is used (reads and writes at offset -1, seek with lseek), so "a" modes
 * append as with io.open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "io.h"
#include "util.h"
#include "rt.h"
#include "scheduler.h"

#define FILE_MT "crt.fs.file"
#define CHUNK ((size_t)1 << 20)       /* bytes per read request */
#define WRITE_CHUNK ((size_t)1 << 28) /* bytes per write request */

enum { K_READ, K_WRITE, K_SIMPLE, K_STAT, K_SCANDIR, K_FOPEN, K_FREAD, K_FWRITE, K_FCLOSE };
enum { ST_OPEN, ST_FSTAT, ST_READ, ST_WRITE, ST_CLOSE, ST_ONE };

typedef struct lfile {
  int fd;        /* -1 once closed */
  int busy;      /* an operation is in flight */
  int collected; /* the Lua object is gone: the last operation frees this */
  int readable, writable;
} lfile;

typedef struct fs_op {
  uv_fs_t req;
  crt_task *t; /* NULL once the task went away */
  crt_runtime *rt;
  int kind, stage;
  uv_file fd; /* opened by this call and not yet closed, or -1 */
  int err;
  int all;       /* file:read("a") */
  crt_iobuf buf; /* data read */
  size_t limit;  /* file:read(n): at most n bytes */
  const char *data;
  size_t dlen, done;
  int dref;     /* the pinned data string */
  int keep_req; /* scandir: the entries live in req until the result is built */
  uv_stat_t st;
  lfile *file;
} fs_op;

static void fs_cb(uv_fs_t *req);

static void op_free(fs_op *op) {
  if (op->keep_req)
    uv_fs_req_cleanup(&op->req);
  if (op->dref != LUA_NOREF)
    luaL_unref(crt_lua(op->rt), LUA_REGISTRYINDEX, op->dref);
  crt_iobuf_free(&op->buf);
  free(op);
}

static void file_release(lfile *f) {
  f->busy = 0;
  if (f->collected) {
    if (f->fd >= 0)
      close(f->fd);
    free(f);
  }
}

/* ---- stepping ---------------------------------------------------------------- */

static void finish(fs_op *op) {
  crt_task *t = op->t;
  op->t = NULL;
  crt_task_wake(t, 0);
}

static void step_close(fs_op *op) {
  op->stage = ST_CLOSE;
  int r = uv_fs_close(crt_rt_loop(op->rt), &op->req, op->fd, fs_cb);
  if (r < 0) {
    close(op->fd);
    op->fd = -1;
    finish(op);
  }
}

/* The next read request: into the free part of the buffer (growing it when
 * full), at most CHUNK bytes and what limit leaves. */
static int step_read(fs_op *op) {
  crt_iobuf *b = &op->buf;
  if (b->len == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : CHUNK;
    if (op->limit && cap > op->limit)
      cap = op->limit;
    char *d = realloc(b->data, cap);
    if (!d)
      return UV_ENOMEM;
    b->data = d;
    b->cap = cap;
  }
  size_t room = b->cap - b->len;
  if (room > CHUNK)
    room = CHUNK;
  uv_buf_t ub = uv_buf_init(b->data + b->len, (unsigned)room);
  op->stage = ST_READ;
  return uv_fs_read(crt_rt_loop(op->rt), &op->req, op->kind == K_FREAD ? op->file->fd : op->fd, &ub,
                    1, -1, fs_cb);
}

static int step_write(fs_op *op) {
  size_t n = op->dlen - op->done;
  if (n > WRITE_CHUNK)
    n = WRITE_CHUNK;
  uv_buf_t b = uv_buf_init((char *)op->data + op->done, (unsigned)n);
  op->stage = ST_WRITE;
  return uv_fs_write(crt_rt_loop(op->rt), &op->req, op->kind == K_FWRITE ? op->file->fd : op->fd,
                     &b, 1, -1, fs_cb);
}

/* After an error or the last step of a call that opened op->fd. */
static void end_with(fs_op *op, int err) {
  if (err < 0 && !op->err)
    op->err = err;
  if (op->fd >= 0)
    step_close(op);
  else
    finish(op);
}

/* The task went away: free the request, closing what it opened. */
static void abandoned(fs_op *op, ssize_t res) {
  switch (op->kind) {
  case K_FOPEN:
    if (res >= 0)
      close((int)res);
    break;
  case K_FCLOSE:
    if (res == UV_ECANCELED)
      close(op->file->fd); /* the close never ran */
    op->file->fd = -1;
    break;
  case K_READ:
  case K_WRITE:
    if (op->stage == ST_OPEN && res >= 0)
      op->fd = (uv_file)res;
    if (op->stage == ST_CLOSE && res != UV_ECANCELED)
      op->fd = -1; /* the close did run */
    if (op->fd >= 0)
      close(op->fd);
    break;
  default: break;
  }
  if (op->file)
    file_release(op->file);
  op_free(op);
}

static void fs_cb(uv_fs_t *req) {
  fs_op *op = req->data;
  ssize_t res = req->result;
  if (op->kind == K_STAT && res == 0)
    op->st = req->statbuf;
  if (op->kind == K_SCANDIR && op->t && res >= 0)
    op->keep_req = 1; /* uv_fs_scandir_next reads from req later */
  else
    uv_fs_req_cleanup(req);
  if (!op->t) {
    abandoned(op, res);
    return;
  }
  int r = 0;
  switch (op->stage) {
  case ST_ONE:
    if (res < 0)
      op->err = (int)res;
    if (op->kind == K_FOPEN && res >= 0)
      op->fd = (uv_file)res;
    if (op->kind == K_FCLOSE)
      op->file->fd = -1;
    finish(op);
    return;
  case ST_OPEN:
    if (res < 0) {
      op->err = (int)res;
      finish(op);
      return;
    }
    op->fd = (uv_file)res;
    if (op->kind == K_READ) {
      op->stage = ST_FSTAT;
      r = uv_fs_fstat(crt_rt_loop(op->rt), &op->req, op->fd, fs_cb);
    } else {
      r = op->dlen > 0 ? step_write(op) : 0;
      if (r == 0 && op->dlen == 0) {
        end_with(op, 0);
        return;
      }
    }
    break;
  case ST_FSTAT:
    if (res == 0 && S_ISREG(req->statbuf.st_mode) && req->statbuf.st_size > 0) {
      /* Read a regular file into one buffer of its size (plus one byte, to
       * see the end in the same request when the size is right). */
      size_t size = (size_t)req->statbuf.st_size + 1;
      op->buf.data = malloc(size);
      if (!op->buf.data) {
        end_with(op, UV_ENOMEM);
        return;
      }
      op->buf.cap = size;
    }
    r = step_read(op);
    break;
  case ST_READ:
    if (res < 0) {
      r = (int)res;
      break;
    }
    op->buf.len += (size_t)res;
    if (res == 0 || (op->limit && op->buf.len >= op->limit)) {
      if (op->kind == K_FREAD)
        finish(op);
      else
        end_with(op, 0);
      return;
    }
    r = step_read(op);
    break;
  case ST_WRITE:
    if (res < 0) {
      r = (int)res;
      break;
    }
    op->done += (size_t)res;
    if (op->done >= op->dlen) {
      if (op->kind == K_FWRITE)
        finish(op);
      else
        end_with(op, 0);
      return;
    }
    r = step_write(op);
    break;
  case ST_CLOSE:
    op->fd = -1;
    if (res < 0 && !op->err)
      op->err = (int)res;
    finish(op);
    return;
  }
  if (r < 0) {
    if (op->kind == K_FREAD || op->kind == K_FWRITE) {
      op->err = r;
      finish(op);
    } else {
      end_with(op, r);
    }
  }
}

static void fs_unpark(crt_task *t, void *data) {
  fs_op *op = data;
  (void)t;
  op->t = NULL;
  uv_cancel((uv_req_t *)&op->req); /* fs_cb runs either way and frees op */
}

/* ---- results ------------------------------------------------------------------ */

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  default: return "unknown";
  }
}

static double ts(uv_timespec_t t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

/* Runs under lua_pcall: push the results of op (finished without error). */
static int push_result(lua_State *L) {
  fs_op *op = lua_touserdata(L, 1);
  switch (op->kind) {
  case K_READ: lua_pushlstring(L, op->buf.data ? op->buf.data : "", op->buf.len); return 1;
  case K_FREAD:
    if (op->buf.len == 0 && !op->all)
      lua_pushnil(L); /* end of file */
    else
      lua_pushlstring(L, op->buf.data ? op->buf.data : "", op->buf.len);
    return 1;
  case K_STAT: {
    const uv_stat_t *s = &op->st;
    lua_createtable(L, 0, 12);
    lua_pushinteger(L, (lua_Integer)s->st_size);
    lua_setfield(L, -2, "size");
    lua_pushnumber(L, ts(s->st_mtim));
    lua_setfield(L, -2, "mtime");
    lua_pushnumber(L, ts(s->st_atim));
    lua_setfield(L, -2, "atime");
    lua_pushnumber(L, ts(s->st_ctim));
    lua_setfield(L, -2, "ctime");
    lua_pushinteger(L, (lua_Integer)(s->st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushstring(L, type_name(s->st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)s->st_nlink);
    lua_setfield(L, -2, "nlink");
    lua_pushinteger(L, (lua_Integer)s->st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)s->st_gid);
    lua_setfield(L, -2, "gid");
    lua_pushinteger(L, (lua_Integer)s->st_ino);
    lua_setfield(L, -2, "ino");
    lua_pushinteger(L, (lua_Integer)s->st_dev);
    lua_setfield(L, -2, "dev");
    return 1;
  }
  case K_SCANDIR: {
    lua_newtable(L);
    uv_dirent_t ent;
    lua_Integer i = 0;
    while (uv_fs_scandir_next(&op->req, &ent) == 0) {
      lua_pushstring(L, ent.name);
      lua_rawseti(L, -2, ++i);
    }
    return 1;
  }
  default: lua_pushboolean(L, 1); return 1;
  }
}

static int fs_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fs_op *op = (fs_op *)ctx;
  lfile *f = op->file;
  if (op->kind == K_FOPEN) {
    /* The box (index 3) takes the descriptor. */
    if (!op->err)
      f->fd = op->fd;
    op->fd = -1;
    f->busy = 0;
  } else if (f) {
    f->busy = 0;
  }
  if (op->err) {
    int err = op->err, kind = op->kind;
    op_free(op);
    const char *what = kind == K_FREAD    ? "file:read"
                       : kind == K_FWRITE ? "file:write"
                       : kind == K_FCLOSE ? "file:close"
                                          : lua_tostring(L, 1);
    return crt_pushfail(L, err, what);
  }
  if (op->kind == K_FOPEN) {
    op_free(op);
    lua_pushvalue(L, 3);
    return 1;
  }
  int n;
  int st = crt_io_pcall(L, push_result, op, &n);
  op_free(op);
  if (st != LUA_OK)
    return lua_error(L);
  return n;
}

/* A new request for the running task (raises outside a task). */
static fs_op *new_op(lua_State *L, const char *fname, int kind, int stage) {
  crt_task *t = crt_task_require(L, fname);
  fs_op *op = calloc(1, sizeof *op);
  if (!op) {
    luaL_error(L, "%s: not enough memory", fname);
    return NULL;
  }
  op->t = t;
  op->rt = crt_task_rt(op->t);
  op->kind = kind;
  op->stage = stage;
  op->fd = -1;
  op->dref = LUA_NOREF;
  op->req.data = op;
  return op;
}

/* Park on op after its first request was submitted (r = its result). */
static int start(lua_State *L, fs_op *op, int r, const char *what) {
  if (r < 0) {
    if (op->file)
      op->file->busy = 0;
    op_free(op);
    return crt_pushfail(L, r, what);
  }
  if (op->file)
    op->file->busy = 1;
  return crt_task_park(L, op->t, fs_unpark, op, fs_k, (lua_KContext)op);
}

/* ---- crt.fs functions ------------------------------------------------------------ */

static int l_read(lua_State *L) {
  const char *path = crt_io_checkname(L, 1, "crt.fs.read", NULL);
  lua_settop(L, 1);
  fs_op *op = new_op(L, "crt.fs.read", K_READ, ST_OPEN);
  int r = uv_fs_open(crt_rt_loop(op->rt), &op->req, path, O_RDONLY, 0, fs_cb);
  return start(L, op, r, path);
}

static int write_file(lua_State *L, const char *fname, int flags) {
  const char *path = crt_io_checkname(L, 1, fname, NULL);
  if (lua_type(L, 2) != LUA_TSTRING)
    return crt_typeerror(L, fname, 2, "string");
  lua_settop(L, 2);
  crt_task_require(L, fname);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  fs_op *op = calloc(1, sizeof *op);
  if (!op) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "%s: not enough memory", fname);
  }
  op->t = crt_task_current(L);
  op->rt = crt_task_rt(op->t);
  op->kind = K_WRITE;
  op->stage = ST_OPEN;
  op->fd = -1;
  op->dref = ref;
  op->req.data = op;
  op->data = lua_tolstring(L, 2, &op->dlen);
  int r = uv_fs_open(crt_rt_loop(op->rt), &op->req, path, flags, 0666, fs_cb);
  return start(L, op, r, path);
}

static int l_write(lua_State *L) {
  return write_file(L, "crt.fs.write", O_WRONLY | O_CREAT | O_TRUNC);
}

static int l_append(lua_State *L) {
  return write_file(L, "crt.fs.append", O_WRONLY | O_CREAT | O_APPEND);
}

static int stat_common(lua_State *L, const char *fname, int follow) {
  const char *path = crt_io_checkname(L, 1, fname, NULL);
  lua_settop(L, 1);
  fs_op *op = new_op(L, fname, K_STAT, ST_ONE);
  int r = follow ? uv_fs_stat(crt_rt_loop(op->rt), &op->req, path, fs_cb)
                 : uv_fs_lstat(crt_rt_loop(op->rt), &op->req, path, fs_cb);
  return start(L, op, r, path);
}

static int l_stat(lua_State *L) { return stat_common(L, "crt.fs.stat", 1); }
static int l_lstat(lua_State *L) { return stat_common(L, "crt.fs.lstat", 0); }

static int l_readdir(lua_State *L) {
  const char *path = crt_io_checkname(L, 1, "crt.fs.readdir", NULL);
  lua_settop(L, 1);
  fs_op *op = new_op(L, "crt.fs.readdir", K_SCANDIR, ST_ONE);
  int r = uv_fs_scandir(crt_rt_loop(op->rt), &op->req, path, 0, fs_cb);
  return start(L, op, r, path);
}

static int l_mkdir(lua_State *L) {
  const char *path = crt_io_checkname(L, 1, "crt.fs.mkdir", NULL);
  lua_Integer mode = 0777;
  if (!lua_isnoneornil(L, 2)) {
    int isint;
    mode = lua_tointegerx(L, 2, &isint);
    if (!isint)
      return crt_typeerror(L, "crt.fs.mkdir", 2, "integer");
    if (mode < 0 || mode > 07777)
      return crt_argerror(L, "crt.fs.mkdir", 2, "mode out of range (0 to 07777)");
  }
  lua_settop(L, 1);
  fs_op *op = new_op(L, "crt.fs.mkdir", K_SIMPLE, ST_ONE);
  int r = uv_fs_mkdir(crt_rt_loop(op->rt), &op->req, path, (int)mode, fs_cb);
  return start(L, op, r, path);
}

static int l_rmdir(lua_State *L) {
  const char *path = crt_io_checkname(L, 1, "crt.fs.rmdir", NULL);
  lua_settop(L, 1);
  fs_op *op = new_op(L, "crt.fs.rmdir", K_SIMPLE, ST_ONE);
  int r = uv_fs_rmdir(crt_rt_loop(op->rt), &op->req, path, fs_cb);
  return start(L, op, r, path);
}

static int l_unlink(lua_State *L) {
  const char *path = crt_io_checkname(L, 1, "crt.fs.unlink", NULL);
  lua_settop(L, 1);
  fs_op *op = new_op(L, "crt.fs.unlink", K_SIMPLE, ST_ONE);
  int r = uv_fs_unlink(crt_rt_loop(op->rt), &op->req, path, fs_cb);
  return start(L, op, r, path);
}

static int l_rename(lua_State *L) {
  const char *from = crt_io_checkname(L, 1, "crt.fs.rename", NULL);
  const char *to = crt_io_checkname(L, 2, "crt.fs.rename", NULL);
  lua_settop(L, 2);
  fs_op *op = new_op(L, "crt.fs.rename", K_SIMPLE, ST_ONE);
  int r = uv_fs_rename(crt_rt_loop(op->rt), &op->req, from, to, fs_cb);
  return start(L, op, r, from);
}

/* ---- files ----------------------------------------------------------------------- */

/* io.open's modes: r w a r+ w+ a+, each with an optional "b". */
static int parse_mode(const char *m, int *flags, int *readable, int *writable) {
  int plus = 0, b = 0;
  char c = m[0];
  if (c != 'r' && c != 'w' && c != 'a')
    return 0;
  for (const char *p = m + 1; *p; p++) {
    if (*p == '+' && !plus)
      plus = 1;
    else if (*p == 'b' && !b)
      b = 1;
    else
      return 0;
  }
  int rw = plus ? O_RDWR : (c == 'r' ? O_RDONLY : O_WRONLY);
  *flags = rw | (c == 'w' ? O_CREAT | O_TRUNC : 0) | (c == 'a' ? O_CREAT | O_APPEND : 0);
  *readable = plus || c == 'r';
  *writable = plus || c != 'r';
  return 1;
}

static int l_open(lua_State *L) {
  static const char fname[] = "crt.fs.open";
  const char *path = crt_io_checkname(L, 1, fname, NULL);
  const char *mode = "r";
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TSTRING)
      return crt_typeerror(L, fname, 2, "string");
    mode = lua_tostring(L, 2);
  }
  int flags, readable, writable;
  if (!parse_mode(mode, &flags, &readable, &writable))
    return crt_argerror(L, fname, 2, "invalid mode (r, w, a, r+, w+ or a+, with an optional b)");
  crt_task_require(L, fname);
  lua_settop(L, 2);
  lfile **box = lua_newuserdatauv(L, sizeof *box, 0); /* 3 */
  *box = NULL;
  luaL_setmetatable(L, FILE_MT);
  lfile *f = malloc(sizeof *f);
  if (!f)
    return luaL_error(L, "%s: not enough memory", fname);
  f->fd = -1;
  f->busy = 0;
  f->collected = 0;
  f->readable = readable;
  f->writable = writable;
  *box = f;
  fs_op *op = new_op(L, fname, K_FOPEN, ST_ONE);
  op->file = f;
  int r = uv_fs_open(crt_rt_loop(op->rt), &op->req, path, flags, 0666, fs_cb);
  return start(L, op, r, path);
}

static lfile *check_file(lua_State *L, const char *fname) {
  lfile **box = luaL_testudata(L, 1, FILE_MT);
  if (!box) {
    crt_typeerror(L, fname, 1, "file");
    return NULL;
  }
  lfile *f = *box;
  if (!f || f->fd < 0) {
    crt_errorf(L, fname, "attempt to use a closed file");
    return NULL;
  }
  if (f->busy)
    crt_errorf(L, fname, "another task is using this file");
  return f;
}

static int f_read(lua_State *L) {
  static const char fname[] = "file:read";
  lfile *f = check_file(L, fname);
  size_t limit = 0;
  int all = 0;
  if (lua_isnoneornil(L, 2)) {
    all = 1;
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    int isint;
    lua_Integer n = lua_tointegerx(L, 2, &isint);
    if (!isint || n < 0)
      return crt_argerror(L, fname, 2, "count must be a non-negative integer");
    if (n == 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    limit = (size_t)n;
  } else {
    const char *fmt = lua_tostring(L, 2);
    if (!fmt || (strcmp(fmt, "a") != 0 && strcmp(fmt, "*a") != 0))
      return crt_argerror(L, fname, 2, "invalid format (a count or \"a\")");
    all = 1;
  }
  if (!f->readable)
    return crt_pushfail(L, UV_EBADF, fname);
  lua_settop(L, 1);
  fs_op *op = new_op(L, fname, K_FREAD, ST_READ);
  op->file = f;
  op->limit = limit;
  op->all = all;
  return start(L, op, step_read(op), fname);
}

static int f_write(lua_State *L) {
  static const char fname[] = "file:write";
  lfile *f = check_file(L, fname);
  if (lua_type(L, 2) != LUA_TSTRING)
    return crt_typeerror(L, fname, 2, "string");
  crt_task_require(L, fname);
  lua_settop(L, 2);
  size_t len;
  const char *data = lua_tolstring(L, 2, &len);
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!f->writable)
    return crt_pushfail(L, UV_EBADF, fname);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  fs_op *op = calloc(1, sizeof *op);
  if (!op) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "%s: not enough memory", fname);
  }
  op->t = crt_task_current(L);
  op->rt = crt_task_rt(op->t);
  op->kind = K_FWRITE;
  op->fd = -1;
  op->dref = ref;
  op->req.data = op;
  op->file = f;
  op->data = data;
  op->dlen = len;
  return start(L, op, step_write(op), fname);
}

static int f_seek(lua_State *L) {
  static const char fname[] = "file:seek";
  lfile *f = check_file(L, fname);
  lua_Integer pos = 0;
  int whence = SEEK_SET;
  if (!lua_isnoneornil(L, 2)) {
    int isint;
    pos = lua_tointegerx(L, 2, &isint);
    if (!isint)
      return crt_typeerror(L, fname, 2, "integer");
  } else {
    whence = SEEK_CUR; /* seek() tells the position */
  }
  if (!lua_isnoneornil(L, 3)) {
    const char *w = lua_tostring(L, 3);
    if (w && strcmp(w, "set") == 0)
      whence = SEEK_SET;
    else if (w && strcmp(w, "cur") == 0)
      whence = SEEK_CUR;
    else if (w && strcmp(w, "end") == 0)
      whence = SEEK_END;
    else
      return crt_argerror(L, fname, 3, "invalid whence (\"set\", \"cur\" or \"end\")");
  }
  /* lseek never blocks: no need for the thread pool. */
  off_t r = lseek(f->fd, (off_t)pos, whence);
  if (r < 0)
    return crt_pushfail(L, uv_translate_sys_error(errno), fname);
  lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

static int f_close(lua_State *L) {
  static const char fname[] = "file:close";
  lfile **box = luaL_testudata(L, 1, FILE_MT);
  if (!box)
    return crt_typeerror(L, fname, 1, "file");
  lfile *f = *box;
  if (!f || f->fd < 0) {
    lua_pushboolean(L, 1); /* closing twice is harmless */
    return 1;
  }
  if (f->busy)
    return crt_errorf(L, fname, "another task is using this file");
  lua_settop(L, 1);
  fs_op *op = new_op(L, fname, K_FCLOSE, ST_ONE);
  op->file = f;
  return start(L, op, uv_fs_close(crt_rt_loop(op->rt), &op->req, f->fd, fs_cb), fname);
}

/* Finalizer and to-be-closed: close now (close(2) does not wait on a regular
 * file) unless an operation is in flight, which then finishes the job. */
static int f_gc(lua_State *L) {
  lfile **box = lua_touserdata(L, 1);
  lfile *f = *box;
  if (!f)
    return 0;
  *box = NULL;
  if (f->busy) {
    f->collected = 1;
    return 0;
  }
  if (f->fd >= 0)
    close(f->fd);
  free(f);
  return 0;
}

static int f_tbc(lua_State *L) {
  lfile **box = luaL_testudata(L, 1, FILE_MT);
  if (box && *box && !(*box)->busy && (*box)->fd >= 0) {
    close((*box)->fd);
    (*box)->fd = -1;
  }
  return 0;
}

static int f_tostring(lua_State *L) {
  lfile **box = lua_touserdata(L, 1);
  if (*box && (*box)->fd >= 0)
    lua_pushfstring(L, "crt.fs.file: %p", (void *)box);
  else
    lua_pushfstring(L, "crt.fs.file: %p (closed)", (void *)box);
  return 1;
}

void crt_open_fs(lua_State *L, crt_runtime *rt) {
  crt_io_get(L, rt);
  if (luaL_newmetatable(L, FILE_MT)) {
    static const luaL_Reg methods[] = {
        {"read", f_read}, {"write", f_write}, {"seek", f_seek}, {"close", f_close}, {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, f_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, f_tbc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, f_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"read", l_read},     {"write", l_write}, {"append", l_append},
                                   {"stat", l_stat},     {"lstat", l_lstat}, {"readdir", l_readdir},
                                   {"mkdir", l_mkdir},   {"rmdir", l_rmdir}, {"unlink", l_unlink},
                                   {"rename", l_rename}, {"open", l_open},   {NULL, NULL}};
  lua_createtable(L, 0, 12);
  lua_pushlightuserdata(L, rt);
  luaL_setfuncs(L, funcs, 1);
  lua_setfield(L, -2, "fs");
}
