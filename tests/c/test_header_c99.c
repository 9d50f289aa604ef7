/*
 * test_header_c99.c - crt.h compiles alone in a strict C99 translation unit
 * (-std=c99 -pedantic-errors: no other header of crt, no C11), and what it
 * declares links and works: the config defaults, the error codes and their
 * descriptions, one runtime opened and closed.
 */
#include "crt.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  int failures = 0;
  crt_config cfg;
  crt_config_init(&cfg);
  if (cfg.set_global != 1 || cfg.alloc != NULL || cfg.threads != 0)
    failures++;
  if (strcmp(crt_strerror(CRT_ENOMEM), "not enough memory") != 0)
    failures++;
  if (strcmp(crt_strerror(12345), "unknown error") != 0)
    failures++;
  if (CRT_EX_SOFTWARE != 70 || CRT_EFAILED >= 0 || CRT_EDEADLOCK >= 0)
    failures++;
  if (crt_close(NULL) != 0)
    failures++;
  cfg.set_global = 0;
  crt_runtime *rt = crt_open(&cfg);
  if (!rt || crt_dostring(rt, "local crt = require 'crt' crt.sleep(0)", "=c99") != 0 ||
      crt_step(rt, CRT_UNTIL_DONE) != 0)
    failures++;
  if (crt_close(rt) != 0)
    failures++;
  printf("header_c99: %s\n", failures ? "FAIL" : "ok");
  return failures ? 1 : 0;
}
