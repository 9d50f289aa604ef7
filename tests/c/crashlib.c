/*
 * crashlib.c - a Lua C module for the process specs: it misbehaves on
 * purpose inside a crt child process. crashlib.segv() dereferences NULL,
 * crashlib.abort() aborts, crashlib.write(fd, s) writes raw bytes to a
 * descriptor (garbage on the pipe to the parent).
 *
 * Loaded by package.loadlib in a child; any thread that calls it. Built
 * without sanitizers (tests/c/process.cmake) and with the default SIGSEGV
 * action restored first, so that under AddressSanitizer the child dies of
 * a plain SIGSEGV instead of printing a sanitizer report.
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

static int segv(lua_State *L) {
  (void)L;
  signal(SIGSEGV, SIG_DFL);
  volatile int *volatile p = NULL;
  *p = 42;
  return 0;
}

static int do_abort(lua_State *L) {
  (void)L;
  signal(SIGABRT, SIG_DFL);
  abort();
}

static int do_write(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_pushinteger(L, (lua_Integer)write(fd, s, n));
  return 1;
}

int luaopen_crashlib(lua_State *L);

int luaopen_crashlib(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"segv", segv}, {"abort", do_abort}, {"write", do_write}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
