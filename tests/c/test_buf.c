/*
 * test_buf.c - unit test of crt_buf (runtime/buf.h): an empty buffer after
 * init, appends that grow it to several MiB with the bytes intact, reserve,
 * reset (bytes forgotten, memory kept), free, and refusal of a size that
 * overflows. Single-threaded; channels are not involved (nchans stays 0).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "buf.h"

/* The byte at position i of the test pattern: not periodic in any power of
 * two, so a misplaced copy after a regrowth shows up. */
static unsigned char pattern(size_t i) { return (unsigned char)((i * 7919u + i / 251u) & 0xff); }

static void test_init(void) {
  crt_buf b;
  memset(&b, 0xab, sizeof b);
  crt_buf_init(&b);
  CHECK(b.len == 0);
  CHECK(b.nchans == 0);
  CHECK(b.cap == 0 || b.data != NULL);
  crt_buf_free(&b);
}

static void test_append_growth(void) {
  enum { TOTAL = 5 * 1024 * 1024 + 123 };
  unsigned char chunk[4099]; /* an odd size, so appends straddle every boundary */
  crt_buf b;
  size_t done = 0, lastcap = 0, regrowths = 0;

  crt_buf_init(&b);
  CHECK(crt_buf_append(&b, "", 0) == 0);
  CHECK(b.len == 0);
  while (done < TOTAL) {
    size_t n = sizeof chunk;
    if (n > (size_t)TOTAL - done)
      n = (size_t)TOTAL - done;
    for (size_t i = 0; i < n; i++)
      chunk[i] = pattern(done + i);
    if (crt_buf_append(&b, chunk, n) != 0) {
      CHECK(!"crt_buf_append failed");
      break;
    }
    done += n;
    CHECK(b.len == done);
    CHECK(b.cap >= b.len);
    if (b.cap != lastcap) {
      regrowths++;
      lastcap = b.cap;
    }
  }
  CHECK(b.len == TOTAL);
  /* Growth must be geometric: a few dozen reallocations at most for 5 MiB. */
  CHECK(regrowths < 64);
  for (size_t i = 0; i < b.len; i++) {
    if ((unsigned char)b.data[i] != pattern(i)) {
      fprintf(stderr, "byte %zu differs\n", i);
      CHECK(!"content intact after growth");
      break;
    }
  }

  /* reset forgets the bytes but keeps the memory for reuse. */
  size_t cap = b.cap;
  crt_buf_reset(&b);
  CHECK(b.len == 0);
  CHECK(b.cap == cap);
  CHECK(b.nchans == 0);
  CHECK(crt_buf_append(&b, "hello", 5) == 0);
  CHECK(b.len == 5 && memcmp(b.data, "hello", 5) == 0);
  CHECK(b.cap == cap);
  crt_buf_free(&b);

  /* A freed buffer can be initialised and used again. */
  crt_buf_init(&b);
  CHECK(crt_buf_append(&b, "x", 1) == 0);
  CHECK(b.len == 1 && b.data[0] == 'x');
  crt_buf_free(&b);
}

static void test_reserve(void) {
  crt_buf b;
  crt_buf_init(&b);
  CHECK(crt_buf_reserve(&b, 1000) == 0);
  CHECK(b.cap >= 1000);
  CHECK(b.len == 0);
  char *data = b.data;
  size_t cap = b.cap;
  /* Appending within the reserved room does not move the bytes. */
  for (int i = 0; i < 1000; i++)
    CHECK(crt_buf_append(&b, "z", 1) == 0);
  CHECK(b.data == data && b.cap == cap && b.len == 1000);
  /* len + n overflows size_t: refused, and the buffer is left as it was. */
  CHECK(crt_buf_reserve(&b, SIZE_MAX) != 0);
  CHECK(crt_buf_append(&b, "z", SIZE_MAX - 10) != 0);
  CHECK(b.data == data && b.len == 1000);
  CHECK(b.data[999] == 'z');
  crt_buf_free(&b);
}

int main(void) {
  test_init();
  test_append_growth();
  test_reserve();
  if (check_failures) {
    fprintf(stderr, "test_buf: %d check(s) failed\n", check_failures);
    return 1;
  }
  printf("test_buf: ok\n");
  return 0;
}
