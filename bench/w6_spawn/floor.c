/*
 * floor.c - W6's floor: the cheapest way to start N child interpreters that
 * each send one message back and exit. posix_spawn of `lua5.4 -e
 * 'io.write("x")'` with its stdout on a pipe; the parent reads the byte and
 * reaps the child. Two modes, as for crt: all children started at once
 * (then read and reaped in order), and one after another.
 *
 *   cc -O2 -o floor floor.c && ./floor [N] [lua5.4 path]
 *
 * Prints one line: RESULT floor_burst_per_s=... floor_serial_per_s=...
 * Single-threaded.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct kid {
  pid_t pid;
  int fd;
} kid;

static kid start(const char *lua) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    perror("pipe2");
    exit(1);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  char *argv[] = {(char *)lua, "-e", "io.write('x')", NULL};
  kid k = {0, p[0]};
  if (posix_spawn(&k.pid, lua, &fa, NULL, argv, environ) != 0) {
    perror("posix_spawn");
    exit(1);
  }
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  return k;
}

static void finish(kid k) {
  char c;
  if (read(k.fd, &c, 1) != 1 || c != 'x') {
    fprintf(stderr, "floor: no message from child %d\n", (int)k.pid);
    exit(1);
  }
  close(k.fd);
  int st;
  if (waitpid(k.pid, &st, 0) != k.pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "floor: child %d failed\n", (int)k.pid);
    exit(1);
  }
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 200;
  const char *lua = argc > 2 ? argv[2] : "/usr/bin/lua5.4";
  kid *kids = calloc((size_t)n, sizeof *kids);
  double t0 = now();
  for (int i = 0; i < n; i++)
    kids[i] = start(lua);
  for (int i = 0; i < n; i++)
    finish(kids[i]);
  double burst = now() - t0;
  t0 = now();
  for (int i = 0; i < n; i++)
    finish(start(lua));
  double serial = now() - t0;
  printf("RESULT floor_burst_per_s=%.1f floor_serial_per_s=%.1f n=%d\n", n / burst, n / serial, n);
  free(kids);
  return 0;
}
