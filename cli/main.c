/*
 * main.c - the crt command line: runs a script (or -e chunks, or standard
 * input, or an interactive prompt) as the main task of a runtime, drives the
 * loop until nothing is left, and exits with the runtime's status.
 *
 * An ordinary client of crt.h: it opens a runtime, loads its own Lua runner
 * (cli/runner.lua, compiled into this executable only) into the runtime's
 * state and starts it as the main task with the loaded chunks. The one
 * private entry point it uses is crt_child_main (crt_child.h), for the
 * child processes of crt.process.spawn.
 *
 * Single-threaded: everything here runs on the loop thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include <crt.h>
#include <crt_child.h>

/* cli/repl.c */
void crt_cli_repl_push(lua_State *L, crt_runtime *rt);
void crt_cli_repl_close(void);
/* Generated from cli/runner.lua (cmake/embed_lua.cmake). */
const char *crt_cli_lua_source(const char *name, size_t *len);

static const char *progname = "crt";

static void usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e chunk       run the string 'chunk' (may be repeated, runs before the script)\n"
          "  -i             interactive prompt after the script (tasks keep running)\n"
          "  -v, --version  show the versions of crt, Lua and libuv\n"
          "  -h, --help     show this help\n"
          "  --threads N    size of the default thread pool (default: cores; also "
          "CRT_THREADS)\n"
          "  --             stop handling options\n"
          "  -              run standard input as the script and stop handling options\n"
          "Environment:\n"
          "  CRT_THREADS    size of the default thread pool (--threads wins)\n"
          "  CRT_EXE        the crt executable that starts child processes\n"
          "                 (default: the crt next to the running library)\n"
          "  LUA_PATH_5_4, LUA_PATH, LUA_CPATH_5_4, LUA_CPATH\n"
          "                 module search paths, as for lua5.4\n"
          "Documentation: docs/README.md in the crt sources; docs/tasks.md#the-command-line\n",
          progname);
}

static void version(void) {
  printf("crt %s (%s, libuv %s)\n", CRT_VERSION, LUA_RELEASE, uv_version_string());
}

typedef struct options {
  int interactive, show_version, script; /* script: index in argv or 0 */
  int nchunks;
  int threads;
} options;

/* Returns 0, or the exit status for a usage error / help. */
static int parse(int argc, char **argv, options *o) {
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-')
      break;
    if (strcmp(a, "-") == 0)
      break; /* the script is standard input */
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-e") == 0) {
      if (++i >= argc) {
        fprintf(stderr, "%s: '-e' needs argument\n", progname);
        usage(stderr);
        return 2;
      }
      o->nchunks++;
    } else if (strcmp(a, "-i") == 0) {
      o->interactive = 1;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      o->show_version = 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
      const char *v = a[9] == '=' ? a + 10 : (++i < argc ? argv[i] : NULL);
      char *end = NULL;
      long n = v ? strtol(v, &end, 10) : 0;
      if (!v || *end || n < 1 || n > 1024) {
        fprintf(stderr, "%s: --threads needs a whole number from 1 to 1024\n", progname);
        return 2;
      }
      o->threads = (int)n;
    } else {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, a);
      usage(stderr);
      return 2;
    }
  }
  o->script = i < argc ? i : 0;
  return 0;
}

/* The global `arg`, as lua.c builds it: the script at 0, its arguments at
 * 1.., the interpreter and options at negative indices. */
static void create_arg(lua_State *L, int argc, char **argv, int script) {
  int base = script ? script : argc;
  lua_createtable(L, argc - base, base + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - base);
  }
  lua_setglobal(L, "arg");
}

static int load_failed(crt_runtime *rt, lua_State *L) {
  fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  crt_close(rt);
  return 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], CRT_CHILD_FLAG) == 0)
    return crt_child_main(argc, argv);
  if (argv[0] && argv[0][0])
    progname = argv[0];
  options o = {0};
  int rc = parse(argc, argv, &o);
  if (rc)
    return rc;
  if (o.show_version) {
    version();
    if (!o.script && !o.nchunks && !o.interactive)
      return 0;
  }
  int use_stdin = 0;
  if (!o.script && !o.nchunks && !o.show_version && !o.interactive) {
    if (isatty(0))
      o.interactive = 1;
    else
      use_stdin = 1; /* like lua: no script and no tty: run standard input */
  }

  crt_config cfg;
  crt_config_init(&cfg);
  cfg.threads = o.threads;
  cfg.exe_path = "/proc/self/exe";
  crt_runtime *rt = crt_open(&cfg);
  if (!rt) {
    fprintf(stderr, "%s: cannot create the runtime (not enough memory?)\n", progname);
    return 1;
  }
  lua_State *L = crt_lua(rt);
  create_arg(L, argc, argv, o.script);

  /* The runner returns the main function: main(chunks, stdin or nil,
   * script args...). Its chunk is named like the library's prelude, so that
   * the scheduler leaves its frames out of tracebacks as it does for every
   * frame of crt's own Lua (drop_internal_frames matches "[crt prelude]"). */
  size_t len;
  const char *runner = crt_cli_lua_source("runner", &len);
  if (!runner)
    lua_pushliteral(L, "the runner is missing from this executable");
  if (!runner || luaL_loadbuffer(L, runner, len, "=[crt prelude]") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    return load_failed(rt, L);

  /* Load every chunk first: a syntax error anywhere runs nothing. */
  lua_createtable(L, o.nchunks + 1, 0);
  int n = 0;
  for (int i = 1; i < (o.script ? o.script : argc); i++) {
    if (strcmp(argv[i], "-e") == 0) {
      i++;
      if (luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)") != LUA_OK)
        return load_failed(rt, L);
      lua_rawseti(L, -2, ++n);
    } else if (strcmp(argv[i], "--threads") == 0) {
      i++;
    }
  }
  if (o.script || use_stdin) {
    const char *path = o.script ? argv[o.script] : "-";
    int st = strcmp(path, "-") == 0 ? luaL_loadfile(L, NULL) : luaL_loadfile(L, path);
    if (st != LUA_OK)
      return load_failed(rt, L);
    lua_rawseti(L, -2, ++n);
  }
  if (o.interactive)
    crt_cli_repl_push(L, rt);
  else
    lua_pushnil(L);
  int nargs = 0;
  if (o.script)
    for (int i = o.script + 1; i < argc; i++, nargs++)
      lua_pushstring(L, argv[i]);
  crt_start_main(rt, 2 + nargs);

  crt_step(rt, CRT_UNTIL_DONE);
  crt_cli_repl_close();     /* the CLI's own handle, before the runtime closes */
  int code = crt_close(rt); /* after shutdown, which may report errors */
  fflush(stdout);
  return code;
}
