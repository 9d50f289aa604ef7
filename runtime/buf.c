/*
 * buf.c - crt_buf, the growable byte buffer that carries encoded values
 * between Lua states, and the channel references those bytes name.
 *
 * A buffer belongs to one thread at a time (whoever holds it); nothing here
 * locks. Handing a buffer to another thread goes through a synchronised queue
 * (chan.c, the thread pool), which provides the needed memory ordering.
 */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"

#define MINCAP 64

void crt_buf_init(crt_buf *b) { memset(b, 0, sizeof *b); }

int crt_buf_reserve(crt_buf *b, size_t n) {
  if (n <= b->cap - b->len)
    return 0;
  if (n > SIZE_MAX / 2 - b->len)
    return -1;
  size_t cap = b->cap ? b->cap : MINCAP;
  /* Doubling keeps appends amortised O(1) for the codec's many small writes. */
  while (cap - b->len < n)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p)
    return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int crt_buf_reserve_exact(crt_buf *b, size_t n) {
  if (n <= b->cap - b->len)
    return 0;
  if (n > SIZE_MAX - b->len)
    return -1;
  char *p = realloc(b->data, b->len + n);
  if (!p)
    return -1;
  b->data = p;
  b->cap = b->len + n;
  return 0;
}

void crt_buf_rewind(crt_buf *b, size_t len, size_t nchans) {
  if (len < b->len)
    b->len = len;
  /* Release in reverse order of retention; the order does not matter to the
   * channels, but it keeps the array a stack. */
  while (b->nchans > nchans)
    crt_chan_release(b->chans[--b->nchans]);
}

void crt_buf_reset(crt_buf *b) { crt_buf_rewind(b, 0, 0); }

void crt_buf_free(crt_buf *b) {
  crt_buf_reset(b);
  free(b->data);
  free(b->chans);
  crt_buf_init(b);
}

int crt_buf_add_chan(crt_buf *b, struct crt_chan *ch) {
  if (b->nchans == b->chancap) {
    size_t cap = b->chancap ? b->chancap * 2 : 4;
    if (cap > SIZE_MAX / sizeof *b->chans)
      return -1;
    struct crt_chan **p = realloc(b->chans, cap * sizeof *p);
    if (!p)
      return -1;
    b->chans = p;
    b->chancap = cap;
  }
  crt_chan_retain(ch);
  b->chans[b->nchans++] = ch;
  return 0;
}
