/*
 * check.h - the assertion of the C unit tests: CHECK(cond) prints the
 * failing condition with its place and counts it; CHECK_STR(got, want)
 * compares two C strings (got may be NULL) the same way and prints both; a
 * test's main returns CHECK_RESULT(name), which prints "name: ok" or
 * "name: FAIL" and gives the exit status ctest reads (or reads
 * check_failures itself). Every C test of tests/c uses this file.
 */
#ifndef CRT_TEST_CHECK_H
#define CRT_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                        \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

#define CHECK_STR(got, want)                                                                       \
  do {                                                                                             \
    const char *check_g_ = (got), *check_w_ = (want);                                              \
    if (!check_g_ || strcmp(check_g_, check_w_) != 0) {                                            \
      fprintf(stderr, "%s:%d: check failed: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,        \
              check_g_ ? check_g_ : "(null)", check_w_);                                           \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

#define CHECK_RESULT(name)                                                                         \
  (printf("%s: %s\n", (name), check_failures ? "FAIL" : "ok"), check_failures ? 1 : 0)

#endif
