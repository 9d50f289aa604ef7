/*
 * ipc.h - framed messages over a byte stream between a crt process and its
 * child: the frame format, a reader that reassembles messages from whatever
 * chunks arrive, and a link (crt_ipc) that runs both over a uv_pipe_t with
 * write batching and back-pressure on both sides.
 *
 * Loop thread only (the loop that owns the pipe). The reader alone touches
 * no libuv and no Lua, so a C test can feed it any bytes.
 *
 * Frame format (every integer little-endian):
 *
 *   frame   := header:u32 payload[len]
 *   header  := len (bits 0-23, 1..CRT_IPC_MAXFRAME)
 *            | kind (bits 24-30: CRT_IPC_CALL, _MSG, _RESULT or _FAIL)
 *            | more (bit 31: the message continues in the next frame)
 *   message := frame{more=1}* frame{more=0}, every frame of one kind;
 *              the joined payloads are one codec buffer (codec.h) of at most
 *              CRT_IPC_MAXMSG bytes.
 *
 * A message larger than one frame is split by the writer and joined by the
 * reader; nothing else may come between the frames of one message (a link
 * has a single writer). The first message from parent to child is a CALL
 * (the function and its arguments); the last from child to parent is a
 * RESULT (the function's results) or a FAIL (its error, with the child's
 * traceback); MSG carries send and recv in both directions.
 * Anything else (an unknown kind, a zero or oversized length, a change of
 * kind inside a message) is a protocol error: the reader stops for good.
 */
#ifndef CRT_IPC_H
#define CRT_IPC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "list.h"
#include "rt.h"

#define CRT_IPC_HDR 4
#define CRT_IPC_MAXFRAME ((size_t)1 << 20) /* payload bytes per frame: 1 MiB */
#define CRT_IPC_MAXMSG ((size_t)1 << 30)   /* bytes per message: 1 GiB */

/* Back-pressure. A writer with more than CRT_IPC_WHIGH bytes queued (not yet
 * accepted by the socket) should wait until the queue is down to
 * CRT_IPC_WLOW (the link calls on_drain then). An owner should pause reading
 * (crt_ipc_pause) while more than CRT_IPC_RHIGH bytes of received messages
 * wait to be taken, and resume below CRT_IPC_RLOW, so that a sender that
 * outruns its receiver ends up waiting too: memory stays bounded on both
 * sides. */
#define CRT_IPC_WHIGH ((size_t)4 << 20)
#define CRT_IPC_WLOW ((size_t)1 << 20)
#define CRT_IPC_RHIGH ((size_t)8 << 20)
#define CRT_IPC_RLOW ((size_t)2 << 20)

enum { CRT_IPC_CALL = 1, CRT_IPC_MSG = 2, CRT_IPC_RESULT = 3, CRT_IPC_FAIL = 4 };
#define CRT_IPC_MORE 0x80u

/* Error codes of the reader (negative, beside libuv's). */
#define CRT_IPC_EPROTO (-7001) /* malformed frame: see crt_ipc_reader.why */

/* One received message: payload bytes of a codec buffer. */
typedef struct crt_ipc_msg {
  crt_snode node; /* in the reader's FIFO, then in its owner's queue */
  unsigned kind;
  size_t len;
  char *data; /* points into the same allocation, or to a joined buffer */
} crt_ipc_msg;

void crt_ipc_msg_free(crt_ipc_msg *m);

/* ---- the reader: bytes in, messages out ---------------------------------- */

typedef struct crt_ipc_reader {
  char *buf; /* raw bytes: [off, len) not parsed yet */
  size_t off, len, cap;
  crt_buf part;       /* payload of a message whose last frame has not come */
  unsigned part_kind; /* 0 = no message in progress */
  size_t direct;      /* > 0: bytes of a large frame still to come,
                       read straight into `part` (no copy) */
  int direct_more;    /* that frame's `more` bit */
  crt_fifo done;      /* complete messages not yet taken */
  size_t nbytes;      /* their payload bytes */
  int err;            /* 0, or CRT_IPC_EPROTO (sticky) */
  char why[96];       /* what was wrong, for CRT_IPC_EPROTO */
} crt_ipc_reader;

void crt_ipc_reader_init(crt_ipc_reader *r);
void crt_ipc_reader_free(crt_ipc_reader *r);
/* Where the next bytes may be written (at least 64 KiB, more when the frame
 * being read is larger). Returns 0 or UV_ENOMEM. */
int crt_ipc_reader_space(crt_ipc_reader *r, char **p, size_t *n);
/* n bytes were written at the place crt_ipc_reader_space gave: parse every
 * complete frame. Returns 0 or a negative error (sticky). */
int crt_ipc_reader_commit(crt_ipc_reader *r, size_t n);
/* Copy n bytes in and parse them (tests, the child's first message). */
int crt_ipc_reader_feed(crt_ipc_reader *r, const char *p, size_t n);
/* The oldest complete message (the caller owns it), or NULL. */
crt_ipc_msg *crt_ipc_reader_take(crt_ipc_reader *r);
/* True when a message was started but its last frame has not arrived. */
int crt_ipc_reader_partial(const crt_ipc_reader *r);

/* Encode a frame header. */
static inline void crt_ipc_put_header(char *p, size_t len, unsigned kind, int more) {
  uint32_t h = (uint32_t)len | ((uint32_t)kind << 24) | (more ? 0x80000000u : 0);
  p[0] = (char)(h & 0xff);
  p[1] = (char)((h >> 8) & 0xff);
  p[2] = (char)((h >> 16) & 0xff);
  p[3] = (char)((h >> 24) & 0xff);
}

/* ---- the link: a reader and a batching writer over a uv pipe -------------- */

typedef struct crt_ipc crt_ipc;

/* What the link tells its owner (each may be NULL). They run from libuv
 * callbacks on the loop thread; on_closed is the last call, after which the
 * owner may free the struct holding the link. */
typedef struct crt_ipc_ops {
  void (*on_message)(crt_ipc *ipc); /* messages wait in ipc->rd */
  void (*on_drain)(crt_ipc *ipc);   /* write queue down to CRT_IPC_WLOW, or failed */
  void (*on_end)(crt_ipc *ipc);     /* read side ended: ipc->rerr says how */
  void (*on_closed)(crt_ipc *ipc);
} crt_ipc_ops;

struct crt_ipc {
  crt_handle_close_fn close_fn; /* the handle convention of rt.h: stays first */
  uv_pipe_t pipe;
  const crt_ipc_ops *ops;
  void *owner;
  crt_ipc_reader rd;
  /* Write side: messages go into `batch` while a write is in flight, and
   * leave in one uv_write when it completes. */
  crt_buf batch;
  size_t frame_start; /* offset in batch of the frame being built */
  crt_buf spare;      /* a recycled buffer for the next batch */
  int inflight;       /* uv_write requests not yet called back */
  size_t inflight_bytes;
  int werr;     /* first write error (UV_EPIPE, ...); sticky */
  int rerr;     /* 0 while reading; UV_EOF, an error or CRT_IPC_EPROTO */
  int reading;  /* uv_read_start is active */
  int paused;   /* the owner asked to stop reading for now */
  int refd;     /* uv_ref'd (a task waits on this link) */
  int shut;     /* the write side was shut down */
  int open;     /* the handle is open (not closing) */
  int nwaiting; /* how many reasons to keep the loop alive (see hold) */
};

/* Open a link on an initialised, connected uv_pipe_t inside ipc (the caller
 * did uv_pipe_init(&ipc->pipe) and spawned or opened it). Starts reading.
 * The handle is unref'd: it keeps the loop alive only while held. */
void crt_ipc_start(crt_ipc *ipc, const crt_ipc_ops *ops, void *owner);
/* Fill in the fields before the pipe is opened (called by crt_ipc_start;
 * exposed for owners that must close a pipe that never started). */
void crt_ipc_init(crt_ipc *ipc);

/* Writing one message: crt_ipc_begin returns the buffer to append the
 * payload to (a frame header is reserved), crt_ipc_end seals it (splitting
 * it into frames when it is large) and sends or batches it; crt_ipc_abort
 * forgets a payload that could not be built. crt_ipc_end returns 0, UV_E2BIG
 * (larger than CRT_IPC_MAXMSG), UV_ENOMEM, or the link's write error. */
crt_buf *crt_ipc_begin(crt_ipc *ipc);
int crt_ipc_end(crt_ipc *ipc, unsigned kind);
void crt_ipc_abort(crt_ipc *ipc);
/* Bytes written but not yet taken by the kernel (for back-pressure). */
size_t crt_ipc_pending(const crt_ipc *ipc);
/* Push queued writes out now, even if one is in flight. */
void crt_ipc_flush(crt_ipc *ipc);
/* True while bytes remain to be written and the link can still write. */
int crt_ipc_writing(const crt_ipc *ipc);

/* Take the next received message (NULL if none): the caller owns it. */
crt_ipc_msg *crt_ipc_take(crt_ipc *ipc);
/* Stop (on = 1) or resume (0) reading from the pipe. */
void crt_ipc_pause(crt_ipc *ipc, int on);

/* Keep the loop alive (delta +1) or not (-1): while a task waits. */
void crt_ipc_hold(crt_ipc *ipc, int delta);

/* Half-close: no more writes (the peer reads EOF after what was sent). */
void crt_ipc_shutdown(crt_ipc *ipc);
/* Close the handle; queued writes are dropped. on_closed follows. */
void crt_ipc_close(crt_ipc *ipc);

/* Text for an error code of the link (libuv's or CRT_IPC_EPROTO). */
const char *crt_ipc_strerror(const crt_ipc *ipc, int err);

#endif
