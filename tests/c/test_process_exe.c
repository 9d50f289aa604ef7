/*
 * test_process_exe.c - crt.process.spawn from an embedding host, where
 * crt_config.exe_path says which crt executable to start: the real one
 * works; a path that does not exist gives nil, message, "ENOENT" and starts
 * nothing; a program that is not crt (exits at once, or writes garbage on
 * the pipe) makes await raise a clear error; nothing is left running.
 *
 * Single-threaded (the loop thread of each runtime).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "check.h"
#include "crt.h"

#ifndef CRT_TEST_EXE
#error "CRT_TEST_EXE: path of the crt executable"
#endif

static char logged[8192];
static void on_log(void *ud, crt_log_level level, const char *msg) {
  (void)ud;
  (void)level;
  snprintf(logged, sizeof logged, "%s", msg);
}

/* Run chunk in a runtime whose exe_path is exe; it must end without error. */
static void run(const char *exe, const char *chunk) {
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.exe_path = exe;
  cfg.log = on_log;
  logged[0] = 0;
  crt_runtime *rt = crt_open(&cfg);
  CHECK(rt != NULL);
  if (!rt)
    return;
  CHECK(crt_dostring(rt, chunk, "=test") == 0);
  int rc = crt_step(rt, CRT_UNTIL_DONE);
  if (rc != 0 || crt_exit_code(rt) != 0)
    fprintf(stderr, "chunk failed (%d): %s\n%s\n", rc, chunk, logged);
  CHECK(rc == 0);
  CHECK(crt_exit_code(rt) == 0);
  crt_close(rt);
}

int main(void) {
  /* The real crt. */
  run(CRT_TEST_EXE, "local c = assert(crt.process.spawn(function(a) return a * 2 end, 21))\n"
                    "assert(c:await() == 42)\n"
                    "assert(math.type(c.pid) == 'integer')\n");

  /* A path that does not exist: nil, message, code; nothing started. */
  run("/nonexistent/crt", "local c, err, code = crt.process.spawn(function() end)\n"
                          "assert(c == nil, 'spawned?')\n"
                          "assert(code == 'ENOENT', code)\n"
                          "assert(err:find('crt.process.spawn: cannot start /nonexistent/crt', "
                          "1, true), err)\n");

  /* Not crt: a program that exits at once with status 0. */
  run("/bin/true", "local c = assert(crt.process.spawn(function() return 1 end))\n"
                   "local ok, err = pcall(c.await, c)\n"
                   "assert(not ok)\n"
                   "assert(err:find('exited with code 0 without returning results'), err)\n");

  /* A fake child that writes garbage on the pipe: killed, reported. */
  char script[] = "/tmp/crt-fake-child-XXXXXX";
  int fd = mkstemp(script);
  CHECK(fd >= 0);
  const char *body = "#!/bin/sh\nprintf 'this is not a frame' >&3\nexec sleep 30\n";
  CHECK(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
  close(fd);
  chmod(script, 0755);
  run(script, "local c = assert(crt.process.spawn(function() return 1 end))\n"
              "local t0 = crt.now()\n"
              "local ok, err = pcall(c.await, c)\n"
              "assert(not ok)\n"
              "assert(err:find('sent a malformed message', 1, true), err)\n"
              "assert(err:find('and was killed', 1, true), err)\n"
              "assert(crt.now() - t0 < 10, 'not killed')\n"
              "assert(c:recv() == nil)\n");
  unlink(script);

  if (check_failures) {
    fprintf(stderr, "%d check(s) failed\n", check_failures);
    return 1;
  }
  printf("process_exe: ok\n");
  return 0;
}
