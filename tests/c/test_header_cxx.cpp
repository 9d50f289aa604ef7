/*
 * test_header_cxx.cpp - crt.h compiles alone as C++11 and its functions link
 * with C linkage (extern "C").
 */
#include "crt.h"

#include <cstdio>
#include <cstring>

int main() {
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.set_global = 0;
  crt_runtime *rt = crt_open(&cfg);
  bool ok = rt != nullptr && crt_lua(rt) != nullptr &&
            std::strcmp(crt_strerror(CRT_EDEADLOCK), "unknown error") != 0;
  ok = crt_close(rt) == 0 && ok;
  std::printf("header_cxx: %s\n", ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}
