/*
 * buf.h - crt_buf, a growable byte buffer used to carry encoded values
 * between Lua states (codec output, channel items, thread jobs, IPC frames).
 *
 * A buffer is owned by one thread at a time; handing it to another thread is
 * done through a queue that is itself synchronised. A buffer also holds the
 * channel references its encoded bytes name (see codec.h), so that a channel
 * that travels only inside a message stays alive until the message is decoded
 * or dropped.
 */
#ifndef CRT_BUF_H
#define CRT_BUF_H

#include <stddef.h>
#include <string.h>

struct crt_chan;

typedef struct crt_buf {
  char *data;
  size_t len;
  size_t cap;
  struct crt_chan **chans; /* channels retained by this buffer */
  size_t nchans;
  size_t chancap;
} crt_buf;

void crt_buf_init(crt_buf *b);
/* Make room for n more bytes; returns 0 or CRT_ENOMEM-style -1. */
int crt_buf_reserve(crt_buf *b, size_t n);
/* Make room for n more bytes without rounding up: when there is less room,
 * the capacity becomes len + n (a buffer whose final size is known, such as
 * a file read whole). Returns 0 or -1. */
int crt_buf_reserve_exact(crt_buf *b, size_t n);
/* Append n bytes; 0, or -1 when memory cannot be had (b unchanged). Inline:
 * the common case (room left) is a memcpy on the hot paths (streams, the
 * codec). */
static inline int crt_buf_append(crt_buf *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  if (n > b->cap - b->len && crt_buf_reserve(b, n) != 0)
    return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}
/* Forget the bytes and release the retained channels, keep the memory. */
void crt_buf_reset(crt_buf *b);
/* Release everything. */
void crt_buf_free(crt_buf *b);
/* Retain ch and remember it; released by reset/free. Returns 0 or -1. */
int crt_buf_add_chan(crt_buf *b, struct crt_chan *ch);
/* Cut the buffer back to len bytes and nchans retained channels, releasing
 * the channels retained since (the codec undoes a failed encode with this). */
void crt_buf_rewind(crt_buf *b, size_t len, size_t nchans);

#endif
