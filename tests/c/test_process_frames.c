/*
 * test_process_frames.c - the frames of runtime/ipc.c: the reader on valid
 * input cut at every byte boundary, on messages split into frames, and on
 * malformed input (every kind of bad header is refused, never a crash), on
 * large frames read in pieces of any size; the
 * link's writer over a socket pair, checked by reading the raw bytes back
 * (batching, splitting of a 3 MiB message, back-pressure figures).
 *
 * Single-threaded: one loop, one socket pair.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "ipc.h"

/* Append one frame to out. */
static size_t frame(char *out, size_t len, unsigned kind, int more, char fill) {
  crt_ipc_put_header(out, len, kind, more);
  memset(out + CRT_IPC_HDR, fill, len);
  return CRT_IPC_HDR + len;
}

static void test_single_frames(void) {
  char buf[256];
  size_t n = 0;
  n += frame(buf + n, 10, CRT_IPC_MSG, 0, 'a');
  n += frame(buf + n, 1, CRT_IPC_RESULT, 0, 'b');
  n += frame(buf + n, 100, CRT_IPC_CALL, 0, 'c');
  /* Fed in pieces of every size: the same three messages come out. */
  for (size_t step = 1; step <= n; step++) {
    crt_ipc_reader r;
    crt_ipc_reader_init(&r);
    for (size_t off = 0; off < n; off += step)
      CHECK(crt_ipc_reader_feed(&r, buf + off, off + step > n ? n - off : step) == 0);
    crt_ipc_msg *m = crt_ipc_reader_take(&r);
    CHECK(m && m->kind == CRT_IPC_MSG && m->len == 10 && m->data[9] == 'a');
    crt_ipc_msg_free(m);
    m = crt_ipc_reader_take(&r);
    CHECK(m && m->kind == CRT_IPC_RESULT && m->len == 1 && m->data[0] == 'b');
    crt_ipc_msg_free(m);
    m = crt_ipc_reader_take(&r);
    CHECK(m && m->kind == CRT_IPC_CALL && m->len == 100 && m->data[99] == 'c');
    crt_ipc_msg_free(m);
    CHECK(crt_ipc_reader_take(&r) == NULL);
    CHECK(!crt_ipc_reader_partial(&r));
    crt_ipc_reader_free(&r);
  }
}

static void test_split_message(void) {
  size_t big = CRT_IPC_MAXFRAME;
  char *buf = malloc(3 * (big + CRT_IPC_HDR));
  size_t n = 0;
  n += frame(buf + n, big, CRT_IPC_MSG, 1, 'x');
  n += frame(buf + n, big, CRT_IPC_MSG, 1, 'y');
  n += frame(buf + n, 5, CRT_IPC_MSG, 0, 'z');
  crt_ipc_reader r;
  crt_ipc_reader_init(&r);
  CHECK(crt_ipc_reader_feed(&r, buf, n - 1) == 0);
  CHECK(crt_ipc_reader_take(&r) == NULL);
  CHECK(crt_ipc_reader_partial(&r));
  CHECK(crt_ipc_reader_feed(&r, buf + n - 1, 1) == 0);
  crt_ipc_msg *m = crt_ipc_reader_take(&r);
  CHECK(m && m->len == 2 * big + 5);
  if (m) {
    CHECK(m->data[0] == 'x' && m->data[big - 1] == 'x' && m->data[big] == 'y');
    CHECK(m->data[2 * big] == 'z' && m->data[2 * big + 4] == 'z');
  }
  crt_ipc_msg_free(m);
  crt_ipc_reader_free(&r);
  free(buf);
}

/* Large frames are read straight into their message buffer: the same
 * bytes come out whatever the pieces they arrive in. */
static void test_direct(void) {
  size_t big = CRT_IPC_MAXFRAME, small = 100 * 1024 + 3;
  size_t total = 3 * CRT_IPC_HDR + big + small + 7;
  char *buf = malloc(total);
  size_t n = 0;
  crt_ipc_put_header(buf + n, big, CRT_IPC_MSG, 1);
  n += CRT_IPC_HDR;
  for (size_t i = 0; i < big; i++)
    buf[n + i] = (char)(i * 7);
  n += big;
  crt_ipc_put_header(buf + n, small, CRT_IPC_MSG, 0);
  n += CRT_IPC_HDR;
  for (size_t i = 0; i < small; i++)
    buf[n + i] = (char)(i * 13);
  n += small;
  n += frame(buf + n, 7, CRT_IPC_RESULT, 0, 'r');
  CHECK(n == total);
  size_t steps[] = {1, 3, 4, 5, 4093, 65536, 65539, total};
  for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
    crt_ipc_reader r;
    crt_ipc_reader_init(&r);
    size_t step = steps[s];
    for (size_t off = 0; off < total && !r.err; off += step)
      CHECK(crt_ipc_reader_feed(&r, buf + off, off + step > total ? total - off : step) == 0);
    crt_ipc_msg *m = crt_ipc_reader_take(&r);
    CHECK(m && m->kind == CRT_IPC_MSG && m->len == big + small);
    if (m && m->len == big + small) {
      int same = 1;
      for (size_t i = 0; i < big; i++)
        same &= m->data[i] == (char)(i * 7);
      for (size_t i = 0; i < small; i++)
        same &= m->data[big + i] == (char)(i * 13);
      CHECK(same);
    }
    crt_ipc_msg_free(m);
    m = crt_ipc_reader_take(&r);
    CHECK(m && m->kind == CRT_IPC_RESULT && m->len == 7 && m->data[6] == 'r');
    crt_ipc_msg_free(m);
    CHECK(!crt_ipc_reader_partial(&r));
    crt_ipc_reader_free(&r);
  }
  free(buf);
}

/* Bytes that must be refused with CRT_IPC_EPROTO, whatever follows. */
static void refused(const char *what, const char *bytes, size_t n) {
  crt_ipc_reader r;
  crt_ipc_reader_init(&r);
  int e = crt_ipc_reader_feed(&r, bytes, n);
  if (e != CRT_IPC_EPROTO)
    fprintf(stderr, "not refused: %s\n", what);
  CHECK(e == CRT_IPC_EPROTO);
  CHECK(r.why[0] != 0);
  /* Sticky: more input changes nothing. */
  CHECK(crt_ipc_reader_feed(&r, "\1\0\0\2x", 5) == CRT_IPC_EPROTO);
  crt_ipc_msg *m;
  while ((m = crt_ipc_reader_take(&r)))
    crt_ipc_msg_free(m);
  crt_ipc_reader_free(&r);
}

static void test_malformed(void) {
  char b[64];
  crt_ipc_put_header(b, 0, CRT_IPC_MSG, 0);
  refused("zero length", b, 4);
  crt_ipc_put_header(b, CRT_IPC_MAXFRAME + 1, CRT_IPC_MSG, 0);
  refused("frame too large", b, 4);
  crt_ipc_put_header(b, 3, 0, 0);
  refused("kind 0", b, 4);
  crt_ipc_put_header(b, 3, 77, 0);
  refused("unknown kind", b, 4);
  size_t n = frame(b, 3, CRT_IPC_MSG, 1, 'a');
  n += frame(b + n, 3, CRT_IPC_RESULT, 0, 'b');
  refused("kind changes inside a message", b, n);
  refused("text", "garbage that is not a frame at all", 34);
  refused("all ones", "\377\377\377\377\377\377", 6);
  /* A valid message before the garbage is still delivered. */
  crt_ipc_reader r;
  crt_ipc_reader_init(&r);
  n = frame(b, 2, CRT_IPC_MSG, 0, 'k');
  memcpy(b + n, "\377\377\377\377", 4);
  CHECK(crt_ipc_reader_feed(&r, b, n + 4) == CRT_IPC_EPROTO);
  crt_ipc_msg *m = crt_ipc_reader_take(&r);
  CHECK(m && m->len == 2 && m->data[0] == 'k');
  crt_ipc_msg_free(m);
  crt_ipc_reader_free(&r);
}

/* Random bytes: refused or accepted, never a crash or a leak. */
static void test_noise(void) {
  srand(12345);
  for (int round = 0; round < 2000; round++) {
    char b[64];
    size_t n = 1 + (size_t)(rand() % (int)sizeof b);
    for (size_t i = 0; i < n; i++)
      b[i] = (char)(rand() & 0xff);
    if (round % 2)
      b[3] = (char)(rand() % 5); /* plausible kinds, small lengths */
    crt_ipc_reader r;
    crt_ipc_reader_init(&r);
    crt_ipc_reader_feed(&r, b, n);
    crt_ipc_msg *m;
    while ((m = crt_ipc_reader_take(&r)))
      crt_ipc_msg_free(m);
    crt_ipc_reader_free(&r);
  }
}

/* ---- the writer over a socket pair ---------------------------------------- */

static int closed;
static void on_closed(crt_ipc *ipc) {
  (void)ipc;
  closed = 1;
}
static const crt_ipc_ops ops = {NULL, NULL, NULL, on_closed};

static int put(crt_ipc *ipc, size_t len, char fill) {
  crt_buf *b = crt_ipc_begin(ipc);
  if (!b || crt_buf_reserve(b, len) != 0)
    return -1;
  memset(b->data + b->len, fill, len);
  b->len += len;
  return crt_ipc_end(ipc, CRT_IPC_MSG);
}

static void test_writer(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  crt_ipc ipc;
  crt_ipc_init(&ipc);
  uv_pipe_init(&loop, &ipc.pipe, 0);
  ipc.pipe.data = &ipc;
  CHECK(uv_pipe_open(&ipc.pipe, sv[0]) == 0);
  crt_ipc_start(&ipc, &ops, NULL);

  size_t big = 3 * CRT_IPC_MAXFRAME + 123;
  CHECK(put(&ipc, 5, 'a') == 0);   /* goes out at once */
  CHECK(put(&ipc, 7, 'b') == 0);   /* batched behind the first write */
  CHECK(put(&ipc, big, 'c') == 0); /* split into four frames */
  CHECK(put(&ipc, 1, 'd') == 0);
  crt_buf *b = crt_ipc_begin(&ipc);
  CHECK(b != NULL);
  crt_ipc_abort(&ipc); /* an aborted message leaves nothing */
  CHECK(crt_ipc_pending(&ipc) > 0);

  /* Read everything back on the other end while the loop writes. */
  crt_ipc_reader r;
  crt_ipc_reader_init(&r);
  int got = 0;
  size_t sizes[4] = {5, 7, big, 1};
  char fills[4] = {'a', 'b', 'c', 'd'};
  for (int guard = 0; got < 4 && guard < 100000; guard++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    char *p;
    size_t room;
    CHECK(crt_ipc_reader_space(&r, &p, &room) == 0);
    ssize_t k = recv(sv[1], p, room, MSG_DONTWAIT);
    if (k > 0)
      CHECK(crt_ipc_reader_commit(&r, (size_t)k) == 0);
    crt_ipc_msg *m;
    while ((m = crt_ipc_reader_take(&r))) {
      CHECK(got < 4);
      if (got < 4) {
        CHECK(m->len == sizes[got]);
        CHECK(m->data[0] == fills[got] && m->data[m->len - 1] == fills[got]);
      }
      got++;
      crt_ipc_msg_free(m);
    }
  }
  CHECK(got == 4);
  CHECK(!crt_ipc_writing(&ipc));
  CHECK(crt_ipc_pending(&ipc) == 0);
  crt_ipc_reader_free(&r);

  /* Limits: an empty message is refused. */
  CHECK(crt_ipc_begin(&ipc) != NULL);
  CHECK(crt_ipc_end(&ipc, CRT_IPC_MSG) == UV_EINVAL);

  /* A closed peer: writes fail with a sticky error, nothing leaks. */
  close(sv[1]);
  for (int i = 0; i < 100 && ipc.werr == 0; i++) {
    put(&ipc, 1000, 'e');
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  CHECK(ipc.werr != 0);
  CHECK(put(&ipc, 10, 'f') != 0);

  crt_ipc_close(&ipc);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(closed);
  CHECK(uv_loop_close(&loop) == 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* a write to the closed peer must fail, not kill */
  test_single_frames();
  test_split_message();
  test_direct();
  test_malformed();
  test_noise();
  test_writer();
  if (check_failures) {
    fprintf(stderr, "%d check(s) failed\n", check_failures);
    return 1;
  }
  printf("process_frames: ok\n");
  return 0;
}
