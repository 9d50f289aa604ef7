/*
 * check.h - the assertion of the C unit tests: CHECK(cond) prints the
 * failing condition with its place and counts it; a test's main returns
 * CHECK_RESULT(name), which prints "name: ok" or "name: FAIL" and gives the
 * exit status ctest reads.
 */
#ifndef CRT_TEST_CHECK_H
#define CRT_TEST_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                        \
      check_failures++;                                                                            \
    }                                                                                              \
  } while (0)

#define CHECK_RESULT(name)                                                                         \
  (printf("%s: %s\n", (name), check_failures ? "FAIL" : "ok"), check_failures ? 1 : 0)

#endif
