/*
 * ipc.c - framed messages between a crt process and its child (format in
 * ipc.h): the reader that cuts a byte stream into messages, and the link
 * that runs it over a uv_pipe_t with a batching writer and back-pressure.
 *
 * Loop thread only. The link never calls Lua: its owner (the endpoints of
 * runtime/proc_msg.c) queues what crt_ipc_take returns and parks or wakes
 * tasks from the on_* callbacks; bindings/process.c encodes values into the
 * buffer crt_ipc_begin returns and decodes the messages.
 *
 * Writing. A message goes out at once (uv_write, which tries the syscall
 * immediately) when no write is in flight; otherwise it is appended to
 * `batch`, which leaves as one uv_write when the write in flight completes.
 * A burst of small sends from one task thus costs one syscall per loop
 * turn, while a lone send has no added latency. Messages are encoded
 * straight into the batch (no copy), and the buffer of a completed write is
 * kept for the next batch.
 *
 * Memory. libuv owns a write's buffer until the write's callback: the
 * request struct holds it and frees (or recycles) it there, also when the
 * handle is closed (the callback then reports UV_ECANCELED). The link
 * struct itself lives in its owner's struct, freed only after on_closed.
 */
#include "ipc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_CHUNK ((size_t)64 << 10)
/* A frame at least this large is read straight into its message buffer. */
#define DIRECT_MIN ((size_t)64 << 10)
/* A batch this large leaves even while a write is in flight (a sender that
 * cannot wait, outside a task, must not build one huge write). */
#define BATCH_MAX ((size_t)16 << 20)
/* A batch buffer larger than this is freed rather than kept for reuse. */
#define SPARE_MAX ((size_t)4 << 20)

/* Hand src's bytes to dst (which holds nothing); src is left empty. */
static void buf_move(crt_buf *dst, crt_buf *src) {
  *dst = *src;
  crt_buf_init(src);
}

void crt_ipc_msg_free(crt_ipc_msg *m) {
  if (!m)
    return;
  if (m->data != (char *)(m + 1))
    free(m->data);
  free(m);
}

/* ---- the reader ---------------------------------------------------------- */

void crt_ipc_reader_init(crt_ipc_reader *r) {
  memset(r, 0, sizeof *r);
  crt_buf_init(&r->part);
}

void crt_ipc_reader_free(crt_ipc_reader *r) {
  crt_ipc_msg *m;
  while ((m = crt_ipc_reader_take(r)))
    crt_ipc_msg_free(m);
  free(r->buf);
  crt_buf_free(&r->part);
  crt_ipc_reader_init(r);
}

static uint32_t get_header(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
}

static int proto(crt_ipc_reader *r, const char *fmt, size_t a, unsigned b) {
  r->err = CRT_IPC_EPROTO;
  snprintf(r->why, sizeof r->why, fmt, a, b);
  return r->err;
}

static void enqueue(crt_ipc_reader *r, crt_ipc_msg *m) {
  crt_fifo_push(&r->done, &m->node);
  r->nbytes += m->len;
}

/* Check the header at p: 0 or a protocol error. */
static int check_header(crt_ipc_reader *r, uint32_t h) {
  size_t flen = h & 0xffffffu;
  unsigned kind = (h >> 24) & 0x7fu;
  if (kind < CRT_IPC_CALL || kind > CRT_IPC_FAIL)
    return proto(r, "a frame of unknown kind %2$u, %1$zu bytes long", flen, kind);
  if (flen == 0 || flen > CRT_IPC_MAXFRAME)
    return proto(r, "a frame of %zu bytes (kind %u): frames are 1 byte to 1 MiB", flen, kind);
  if (r->part_kind && kind != r->part_kind)
    return proto(r, "a frame of kind %2$u inside a message of kind %1$zu", r->part_kind, kind);
  return 0;
}

/* The last frame of the message in `part` is in: it becomes a message. */
static int part_done(crt_ipc_reader *r) {
  crt_ipc_msg *m = malloc(sizeof *m);
  if (!m)
    return r->err = UV_ENOMEM;
  m->kind = r->part_kind;
  m->len = r->part.len;
  m->data = r->part.data; /* the joined buffer changes hands */
  crt_buf_init(&r->part);
  r->part_kind = 0;
  enqueue(r, m);
  return 0;
}

static int parse(crt_ipc_reader *r) {
  while (r->len - r->off >= CRT_IPC_HDR) {
    const char *p = r->buf + r->off;
    uint32_t h = get_header(p);
    int e = check_header(r, h);
    if (e)
      return e;
    size_t flen = h & 0xffffffu;
    unsigned kind = (h >> 24) & 0x7fu;
    int more = (h >> 31) != 0;
    size_t have = r->len - r->off - CRT_IPC_HDR;
    if (have < flen && flen < DIRECT_MIN)
      break;
    if (r->part.len + flen > CRT_IPC_MAXMSG)
      return proto(r, "a message of more than %zu bytes (kind %u)", CRT_IPC_MAXMSG, kind);
    p += CRT_IPC_HDR;
    if (have < flen) {
      /* A large frame: what came goes to `part`, the rest will be read
       * there directly (see crt_ipc_reader_space). */
      if (crt_buf_reserve(&r->part, flen) != 0)
        return r->err = UV_ENOMEM;
      memcpy(r->part.data + r->part.len, p, have);
      r->part.len += have;
      r->part_kind = kind;
      r->direct = flen - have;
      r->direct_more = more;
      r->off = r->len = 0;
      return 0;
    }
    if (!r->part_kind && !more) {
      crt_ipc_msg *m = malloc(sizeof *m + flen);
      if (!m)
        return r->err = UV_ENOMEM;
      m->kind = kind;
      m->len = flen;
      m->data = (char *)(m + 1);
      memcpy(m->data, p, flen);
      enqueue(r, m);
    } else {
      if (crt_buf_append(&r->part, p, flen) != 0)
        return r->err = UV_ENOMEM;
      r->part_kind = kind;
      if (!more && part_done(r) != 0)
        return r->err;
    }
    r->off += CRT_IPC_HDR + flen;
  }
  if (r->off == r->len)
    r->off = r->len = 0;
  return 0;
}

int crt_ipc_reader_space(crt_ipc_reader *r, char **p, size_t *n) {
  if (r->direct) {
    /* Exactly the rest of the large frame, into its message buffer. */
    if (crt_buf_reserve(&r->part, r->direct) != 0)
      return UV_ENOMEM;
    *p = r->part.data + r->part.len;
    *n = r->direct;
    return 0;
  }
  size_t want = READ_CHUNK;
  size_t have = r->len - r->off;
  if (have >= CRT_IPC_HDR) {
    /* Room for the whole frame being read, so that a large frame arrives
     * in few reads (its header was checked by parse already). */
    size_t flen = get_header(r->buf + r->off) & 0xffffffu;
    if (flen <= CRT_IPC_MAXFRAME && CRT_IPC_HDR + flen - have > want)
      want = CRT_IPC_HDR + flen - have;
  }
  if (r->off > 0 && (have == 0 || r->cap - r->len < want)) {
    memmove(r->buf, r->buf + r->off, have);
    r->len = have;
    r->off = 0;
  }
  if (r->cap - r->len < want) {
    size_t cap = r->len + want;
    char *nb = realloc(r->buf, cap);
    if (!nb)
      return UV_ENOMEM;
    r->buf = nb;
    r->cap = cap;
  }
  *p = r->buf + r->len;
  *n = r->cap - r->len;
  return 0;
}

int crt_ipc_reader_commit(crt_ipc_reader *r, size_t n) {
  if (r->err)
    return r->err;
  if (r->direct) {
    r->part.len += n;
    r->direct -= n;
    if (r->direct == 0 && !r->direct_more && part_done(r) != 0)
      return r->err;
    return 0;
  }
  r->len += n;
  return parse(r);
}

int crt_ipc_reader_feed(crt_ipc_reader *r, const char *p, size_t n) {
  while (n > 0 && !r->err) {
    char *dst;
    size_t room;
    if (crt_ipc_reader_space(r, &dst, &room) != 0)
      return r->err = UV_ENOMEM;
    size_t k = n < room ? n : room;
    memcpy(dst, p, k);
    p += k;
    n -= k;
    crt_ipc_reader_commit(r, k);
  }
  return r->err;
}

crt_ipc_msg *crt_ipc_reader_take(crt_ipc_reader *r) {
  crt_snode *n = crt_fifo_pop(&r->done); /* crt_container_of evaluates its argument twice */
  crt_ipc_msg *m = crt_container_of(n, crt_ipc_msg, node);
  if (m)
    r->nbytes -= m->len;
  return m;
}

int crt_ipc_reader_partial(const crt_ipc_reader *r) {
  return r->part_kind != 0 || r->direct != 0 || r->len > r->off;
}

/* ---- the link: reading ----------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  crt_ipc *ipc = h->data;
  char *p;
  size_t n;
  (void)suggested;
  if (crt_ipc_reader_space(&ipc->rd, &p, &n) != 0) {
    buf->base = NULL;
    buf->len = 0; /* libuv reports UV_ENOBUFS to read_cb */
    return;
  }
  buf->base = p;
  buf->len = n;
}

static void stop_reading(crt_ipc *ipc) {
  if (ipc->reading) {
    uv_read_stop((uv_stream_t *)&ipc->pipe);
    ipc->reading = 0;
  }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  crt_ipc *ipc = s->data;
  (void)buf;
  if (nread == 0)
    return;
  if (nread > 0) {
    crt_snode *tail = ipc->rd.done.tail;
    int e = crt_ipc_reader_commit(&ipc->rd, (size_t)nread);
    if (ipc->rd.done.tail != tail && ipc->ops->on_message)
      ipc->ops->on_message(ipc);
    if (e == 0)
      return;
    nread = e; /* a protocol error or no memory: the read side ends here */
  }
  stop_reading(ipc);
  if (ipc->rerr == 0) {
    ipc->rerr = (int)nread;
    if (ipc->ops->on_end)
      ipc->ops->on_end(ipc);
  }
}

static void start_reading(crt_ipc *ipc) {
  if (ipc->reading || ipc->paused || ipc->rerr || !ipc->open)
    return;
  int e = uv_read_start((uv_stream_t *)&ipc->pipe, alloc_cb, read_cb);
  if (e == 0) {
    ipc->reading = 1;
  } else {
    ipc->rerr = e;
    if (ipc->ops->on_end)
      ipc->ops->on_end(ipc);
  }
}

crt_ipc_msg *crt_ipc_take(crt_ipc *ipc) { return crt_ipc_reader_take(&ipc->rd); }

void crt_ipc_pause(crt_ipc *ipc, int on) {
  ipc->paused = on;
  if (on)
    stop_reading(ipc);
  else
    start_reading(ipc);
}

/* ---- the link: writing ----------------------------------------------------- */

typedef struct wreq {
  uv_write_t req;
  crt_ipc *ipc;
  crt_buf buf;
  size_t bytes;
  char *hdrs;    /* headers of frames 2.. of a split message */
  uv_buf_t *iov; /* NULL: just `one` */
  unsigned niov;
  uv_buf_t one;
} wreq;

size_t crt_ipc_pending(const crt_ipc *ipc) {
  size_t q = ipc->open ? uv_stream_get_write_queue_size((const uv_stream_t *)&ipc->pipe) : 0;
  return q + ipc->batch.len;
}

int crt_ipc_writing(const crt_ipc *ipc) {
  return ipc->open && !ipc->werr && (ipc->inflight > 0 || ipc->batch.len > 0);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  crt_ipc *ipc = w->ipc;
  ipc->inflight--;
  ipc->inflight_bytes -= w->bytes;
  if (status < 0 && ipc->werr == 0)
    ipc->werr = status;
  if (ipc->spare.data == NULL && w->buf.cap <= SPARE_MAX) {
    crt_buf_reset(&w->buf);
    buf_move(&ipc->spare, &w->buf);
  } else {
    crt_buf_free(&w->buf);
  }
  free(w->hdrs);
  if (w->iov != &w->one)
    free(w->iov);
  free(w);
  if (ipc->open && ipc->batch.len > 0 && ipc->inflight == 0 && !ipc->werr)
    crt_ipc_flush(ipc);
  /* Also after a failure or a close (the write was cancelled): a writer
   * waiting for the queue to drain must not wait forever. */
  if (ipc->ops->on_drain && (ipc->werr || !ipc->open || crt_ipc_pending(ipc) <= CRT_IPC_WLOW))
    ipc->ops->on_drain(ipc);
}

/* Hand the batch (its bytes and, for a split message, iov built by the
 * caller) to libuv in one write. */
static void submit(crt_ipc *ipc, wreq *w) {
  buf_move(&w->buf, &ipc->batch);
  if (ipc->spare.data)
    buf_move(&ipc->batch, &ipc->spare);
  w->ipc = ipc;
  w->bytes = w->buf.len;
  if (!w->iov) {
    w->one = uv_buf_init(w->buf.data, (unsigned)w->buf.len);
    w->iov = &w->one;
    w->niov = 1;
  }
  int e = uv_write(&w->req, (uv_stream_t *)&ipc->pipe, w->iov, w->niov, write_cb);
  if (e < 0) {
    if (ipc->werr == 0)
      ipc->werr = e;
    crt_buf_free(&w->buf);
    free(w->hdrs);
    if (w->iov != &w->one)
      free(w->iov);
    free(w);
    return;
  }
  ipc->inflight++;
  ipc->inflight_bytes += w->bytes;
}

void crt_ipc_flush(crt_ipc *ipc) {
  if (ipc->batch.len == 0 || !ipc->open || ipc->werr)
    return;
  wreq *w = calloc(1, sizeof *w);
  if (!w) {
    ipc->werr = UV_ENOMEM;
    return;
  }
  submit(ipc, w);
}

crt_buf *crt_ipc_begin(crt_ipc *ipc) {
  if (ipc->batch.len == 0 && ipc->batch.data == NULL && ipc->spare.data)
    buf_move(&ipc->batch, &ipc->spare);
  ipc->frame_start = ipc->batch.len;
  if (crt_buf_reserve(&ipc->batch, CRT_IPC_HDR + 64) != 0)
    return NULL;
  ipc->batch.len += CRT_IPC_HDR;
  return &ipc->batch;
}

void crt_ipc_abort(crt_ipc *ipc) { crt_buf_rewind(&ipc->batch, ipc->frame_start, 0); }

/* A message larger than one frame: cut it into frames. The first frame's
 * header sits in the reserved slot; the others get headers of their own,
 * and the whole batch leaves now as one write of 1 + 2(n-1) pieces. */
static int end_split(crt_ipc *ipc, unsigned kind, size_t payload) {
  size_t nf = (payload + CRT_IPC_MAXFRAME - 1) / CRT_IPC_MAXFRAME;
  wreq *w = calloc(1, sizeof *w);
  char *hdrs = malloc((nf - 1) * CRT_IPC_HDR);
  uv_buf_t *iov = malloc((2 * nf - 1) * sizeof *iov);
  if (!w || !hdrs || !iov) {
    free(w);
    free(hdrs);
    free(iov);
    return UV_ENOMEM;
  }
  char *base = ipc->batch.data;
  size_t fs = ipc->frame_start;
  crt_ipc_put_header(base + fs, CRT_IPC_MAXFRAME, kind, 1);
  iov[0] = uv_buf_init(base, (unsigned)(fs + CRT_IPC_HDR + CRT_IPC_MAXFRAME));
  size_t pos = fs + CRT_IPC_HDR + CRT_IPC_MAXFRAME;
  for (size_t k = 1; k < nf; k++) {
    size_t left = payload - k * CRT_IPC_MAXFRAME;
    size_t flen = left < CRT_IPC_MAXFRAME ? left : CRT_IPC_MAXFRAME;
    char *h = hdrs + (k - 1) * CRT_IPC_HDR;
    crt_ipc_put_header(h, flen, kind, k + 1 < nf);
    iov[2 * k - 1] = uv_buf_init(h, CRT_IPC_HDR);
    iov[2 * k] = uv_buf_init(base + pos, (unsigned)flen);
    pos += flen;
  }
  w->hdrs = hdrs;
  w->iov = iov;
  w->niov = (unsigned)(2 * nf - 1);
  submit(ipc, w);
  return ipc->werr;
}

int crt_ipc_end(crt_ipc *ipc, unsigned kind) {
  size_t payload = ipc->batch.len - ipc->frame_start - CRT_IPC_HDR;
  int err = 0;
  if (!ipc->open || ipc->shut)
    err = UV_EPIPE;
  else if (ipc->werr)
    err = ipc->werr;
  else if (payload == 0)
    err = UV_EINVAL;
  else if (payload > CRT_IPC_MAXMSG)
    err = UV_E2BIG;
  if (err) {
    crt_ipc_abort(ipc);
    return err;
  }
  if (payload > CRT_IPC_MAXFRAME) {
    err = end_split(ipc, kind, payload);
    if (err == UV_ENOMEM)
      crt_ipc_abort(ipc);
    return err;
  }
  crt_ipc_put_header(ipc->batch.data + ipc->frame_start, payload, kind, 0);
  if (ipc->inflight == 0 || ipc->batch.len >= BATCH_MAX)
    crt_ipc_flush(ipc);
  return ipc->werr;
}

/* ---- the link: opening and closing ----------------------------------------- */

static void close_cb(uv_handle_t *h) {
  crt_ipc *ipc = h->data;
  crt_buf_free(&ipc->batch);
  crt_buf_free(&ipc->spare);
  crt_ipc_reader_free(&ipc->rd);
  if (ipc->ops && ipc->ops->on_closed)
    ipc->ops->on_closed(ipc);
}

/* The runtime closes handles left open at shutdown through this. */
static void handle_close(uv_handle_t *h) { crt_ipc_close(h->data); }

void crt_ipc_init(crt_ipc *ipc) {
  memset(ipc, 0, sizeof *ipc);
  ipc->close_fn = handle_close;
  crt_ipc_reader_init(&ipc->rd);
  crt_buf_init(&ipc->batch);
  crt_buf_init(&ipc->spare);
  ipc->pipe.data = ipc;
}

void crt_ipc_start(crt_ipc *ipc, const crt_ipc_ops *ops, void *owner) {
  ipc->ops = ops;
  ipc->owner = owner;
  ipc->pipe.data = ipc;
  ipc->open = 1;
  uv_unref((uv_handle_t *)&ipc->pipe);
  start_reading(ipc);
}

void crt_ipc_hold(crt_ipc *ipc, int delta) {
  ipc->nwaiting += delta;
  int want = ipc->nwaiting > 0 && ipc->open;
  if (want && !ipc->refd)
    uv_ref((uv_handle_t *)&ipc->pipe);
  else if (!want && ipc->refd && ipc->open)
    uv_unref((uv_handle_t *)&ipc->pipe);
  ipc->refd = want;
}

void crt_ipc_shutdown(crt_ipc *ipc) {
  if (!ipc->open || ipc->shut)
    return;
  ipc->shut = 1;
  crt_ipc_flush(ipc);
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req)
    return;
  if (uv_shutdown(req, (uv_stream_t *)&ipc->pipe, shutdown_cb) != 0)
    free(req);
}

void crt_ipc_close(crt_ipc *ipc) {
  if (!ipc->open)
    return;
  ipc->open = 0;
  ipc->reading = 0;
  ipc->refd = 0;
  if (!uv_is_closing((uv_handle_t *)&ipc->pipe))
    uv_close((uv_handle_t *)&ipc->pipe, close_cb);
}

const char *crt_ipc_strerror(const crt_ipc *ipc, int err) {
  if (err == CRT_IPC_EPROTO)
    return ipc->rd.why[0] ? ipc->rd.why : "malformed frame";
  return uv_strerror(err);
}
