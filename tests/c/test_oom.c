/*
 * test_oom.c - out of memory everywhere: with crt_config.alloc set to an
 * allocator that fails at the N-th allocation, for every N from 1 upward
 * until a run no longer reaches the failure, open a runtime (crt_open may
 * return NULL), run a script that spawns tasks, sleeps, uses a channel, a
 * timer, crt.all and crt.timeout, step it until it is done and close it. No
 * run may crash or hang, leak (under ASan), or leave a libuv handle open;
 * the first error the failure causes must say "not enough memory"; a run that
 * never reaches the failure must give the script's result.
 *
 * Two sweeps: "once" fails only the N-th call (Lua then collects garbage
 * and retries, so most failures are absorbed; the sweep also reaches the
 * allocations of crt_close), "from" fails the N-th call and every later one
 * until crt_close starts (nothing can be retried). Memory comes back for the
 * close because Lua itself cannot call a finalizer (which frees a channel's
 * C object, say) without allocating its call frame. CRT_OOM_STRIDE=k tests
 * every k-th N only; `test_oom once|from N` runs one N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "crt.h"

static const char script[] =
    "local ch = crt.channel(1)\n"
    "local tasks = {}\n"
    "for i = 1, 3 do\n"
    "  tasks[i] = crt.spawn(function() crt.sleep(0.0005 * i) ch:send(i) return i * 10 end)\n"
    "end\n"
    "local got = 0\n"
    "for _ = 1, 3 do got = got + ch:recv() end\n"
    "local fired = 0\n"
    "crt.after(0.001, function() fired = fired + 1 end)\n"
    "local all = crt.all(tasks)\n"
    "local v = crt.timeout(5, function() crt.sleep(0.0005) return 7 end)\n"
    "local late, why = crt.timeout(0.001, function() crt.sleep(10) end)\n"
    "crt.sleep(0.002)\n"
    "assert(fired == 1 and late == nil and why == 'timeout')\n"
    "result = got + all[1][1] + all[2][1] + all[3][1] + v\n";
static const int expected = 6 + 60 + 7;

enum { ONCE, FROM };
static int mode;
static long fail_at, calls;
static int failed, recovered;

static void *oom_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  calls++;
  if (calls == fail_at || (mode == FROM && calls > fail_at && !recovered)) {
    failed = 1;
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* The first error logged must be the memory error; what follows can be its
 * consequences (a task that went on running while the runtime closed, say). */
static int nlogs, bad_logs;
static char last_bad[512];

static void on_log(void *ud, crt_log_level level, const char *msg) {
  (void)ud;
  (void)level;
  if (nlogs++ == 0 && !strstr(msg, "not enough memory")) {
    bad_logs++;
    snprintf(last_bad, sizeof last_bad, "%s", msg);
  }
}

/* One run; returns 1 when the failure point was never reached. */
static int run(long n) {
  fail_at = n;
  calls = 0;
  failed = recovered = 0;
  nlogs = bad_logs = 0;
  crt_config cfg;
  crt_config_init(&cfg);
  cfg.alloc = oom_alloc;
  cfg.log = on_log;
  crt_runtime *rt = crt_open(&cfg);
  if (!rt) { /* crt_open closed what it had opened (with no memory) */
    CHECK(failed);
    return 0;
  }
  int rc = crt_dostring(rt, script, "=oom");
  if (rc != 0) {
    CHECK(failed && rc == CRT_ENOMEM);
    CHECK(strstr(crt_error(rt), "not enough memory") != NULL);
  } else {
    int guard = 0;
    while ((rc = crt_step(rt, CRT_UNTIL_DONE)) == CRT_EFAILED && guard++ < 100)
      ;
    CHECK(rc == 0 || (failed && (rc == CRT_EEXIT || rc == CRT_EDEADLOCK)));
  }
  int result = -1;
  if (!failed) {
    lua_State *L = crt_lua(rt);
    lua_getglobal(L, "result");
    result = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  recovered = 1;
  int status = crt_close(rt);
  if (!failed) {
    CHECK(result == expected);
    CHECK(status == 0);
    CHECK(nlogs == 0);
  } else {
    CHECK(status == 0 || status == 1);
  }
  if (bad_logs) {
    fprintf(stderr, "N=%ld (%s): an error that is not \"not enough memory\":\n%s\n", n,
            mode == ONCE ? "once" : "from", last_bad);
    check_failures++;
  }
  return !failed;
}

int main(int argc, char **argv) {
  long stride = 1;
  const char *s = getenv("CRT_OOM_STRIDE");
  if (s && atol(s) > 0)
    stride = atol(s);
  long only = argc > 2 ? atol(argv[2]) : 0; /* test_oom once|from N: one run */
  for (mode = ONCE; mode <= FROM; mode++) {
    if (argc > 1 && strcmp(argv[1], mode == ONCE ? "once" : "from") != 0)
      continue;
    if (only) {
      run(only);
      continue;
    }
    long n = 1;
    int before = check_failures;
    while (!run(n) && check_failures - before < 20)
      n += stride;
    printf("oom %s: %ld runs, the script needs %ld allocations\n", mode == ONCE ? "once" : "from",
           (n + stride - 1) / stride, calls);
  }
  return CHECK_RESULT("oom");
}
