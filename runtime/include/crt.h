/*
 * crt.h - the one public header of crt, for hosts that embed the runtime
 * (game and tool engines) and for the crt executable itself.
 *
 * A crt_runtime owns one libuv loop and one Lua state. Every function here
 * must be called from the thread that called crt_open (the loop thread).
 * The header compiles alone, as C99 or later and as C++11 or later.
 *
 *   crt_runtime *rt = crt_open(NULL);
 *   if (crt_dofile(rt, "main.lua") == 0)
 *     while (crt_step(rt, CRT_NOWAIT) > 0)
 *       draw_a_frame();
 *   int status = crt_close(rt);
 */
#ifndef CRT_H
#define CRT_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every symbol of this header is exported from crt.so and libcrt.so; the
 * library is built with hidden visibility, so nothing else is. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define CRT_API __attribute__((visibility("default")))
#else
#define CRT_API
#endif

#define CRT_VERSION_MAJOR 0
#define CRT_VERSION_MINOR 1
#define CRT_VERSION_PATCH 0
#define CRT_VERSION "0.1.0"

typedef struct crt_runtime crt_runtime;

/*
** {==================================================================
** Configuration
** ===================================================================
*/

/* Log levels passed to crt_config.log. */
typedef enum {
  CRT_LOG_ERROR = 0,
  CRT_LOG_WARN = 1,
  CRT_LOG_INFO = 2,
  CRT_LOG_DEBUG = 3
} crt_log_level;

typedef struct crt_config {
  /* Size of the default thread pool; 0 = CRT_THREADS or the number of cores. */
  int threads;
  /* Path of the crt executable started for child processes. A host engine is
   * not crt, so it must point this at an installed crt binary to use
   * crt.process.spawn. NULL = the running executable when it is crt. */
  const char *exe_path;
  /* Where diagnostics go (unawaited task errors, deadlocks). NULL = stderr. */
  void (*log)(void *ud, crt_log_level level, const char *message);
  void *log_ud;
  /* Install the "crt" global in the runtime's state (as the crt binary does).
   * The table is always available through require "crt". */
  int set_global;
  /* The allocator of every Lua state the runtime creates (its main state
   * and the state of each thread worker), with lua_newstate's contract;
   * NULL = crt's own. Worker states call it from their own threads at the
   * same time, so it must be thread-safe for one alloc_ud. When it fails,
   * Lua code sees the error "not enough memory"; crt_open returns NULL. */
  lua_Alloc alloc;
  void *alloc_ud;
} crt_config;

/* Fill a config with the defaults (what a NULL config means). */
CRT_API void crt_config_init(crt_config *config);

/* }================================================================== */

/*
** {==================================================================
** Life cycle
** ===================================================================
*/

/* Create a runtime with a fresh Lua state with the standard libraries and crt
 * loaded. config may be NULL (the defaults) and is copied. Returns NULL when
 * memory or the loop cannot be had. */
CRT_API crt_runtime *crt_open(const crt_config *config);

/* The runtime's Lua state (the main state, not a task). */
CRT_API lua_State *crt_lua(crt_runtime *rt);

/* The runtime's libuv loop, for a host that adds handles of its own (the crt
 * executable reads its -i prompt through it). Such handles are the host's:
 * it closes them itself, before crt_close. While one is active, crt_step
 * reports no deadlock (its callback may still wake a task). */
struct uv_loop_s; /* libuv's uv_loop_t: crt.h does not need <uv.h> */
CRT_API struct uv_loop_s *crt_loop(crt_runtime *rt);

/* Cancel every task and let their cleanup run, stop timers, close handles,
 * join threads, reap children, close the state and free everything.
 * Returns the status the process should exit with: crt_exit_code taken
 * after the shutdown (which can itself report an error), or CRT_EX_SOFTWARE
 * when a libuv handle was still open once everything was closed (a bug of
 * crt or of the host; it is logged with the handles' types). rt may be NULL
 * (returns 0). */
CRT_API int crt_close(crt_runtime *rt);

/* }================================================================== */

/*
** {==================================================================
** Running
** ===================================================================
*/

/* Load a file or a string and start it as a task (the main task). Return 0,
 * or a negative code with the message in crt_error (a syntax error, say).
 * The chunk does not run until crt_step is called. */
CRT_API int crt_dofile(crt_runtime *rt, const char *path);
CRT_API int crt_dostring(crt_runtime *rt, const char *chunk, const char *name);

/* Start the function at the top of crt_lua(rt)'s stack, called with the
 * nargs values above it (all popped), as the main task: what crt_dofile does
 * after loading a file. Returns 0, CRT_EFAILED when the runtime is closing,
 * or CRT_ENOMEM. */
CRT_API int crt_start_main(crt_runtime *rt, int nargs);

typedef enum {
  CRT_NOWAIT = 0,    /* run what is ready and return at once (once per frame) */
  CRT_ONCE = 1,      /* wait for at least one event, run what it made ready */
  CRT_UNTIL_DONE = 2 /* run until no task, timer or request is left */
} crt_step_mode;

/* Drive the runtime. Returns the number of live tasks and armed timers
 * (0 = nothing left to do), or a negative error: CRT_EFAILED when a task
 * error nobody awaited was reported (see crt_error), CRT_EEXIT after
 * crt.exit() (crt_exit_code gives the code), CRT_EDEADLOCK when every task
 * waits and nothing can wake them. */
CRT_API int crt_step(crt_runtime *rt, crt_step_mode mode);

/* }================================================================== */

/*
** {==================================================================
** Errors and exit status
** ===================================================================
*/

#define CRT_EFAILED (-1)   /* a task failed and nobody awaited it */
#define CRT_EEXIT (-2)     /* crt.exit was called, or a fatal error */
#define CRT_ESYNTAX (-3)   /* the chunk does not compile */
#define CRT_EFILE (-4)     /* the file cannot be read */
#define CRT_EDEADLOCK (-5) /* every task waits and nothing can wake them */
#define CRT_ENOMEM (-6)    /* the allocator failed */

/* crt_close's status when the loop could not be closed (sysexits.h's
 * EX_SOFTWARE: an internal error). */
#define CRT_EX_SOFTWARE 70

/* The last error with its traceback, or "" when there is none. */
CRT_API const char *crt_error(crt_runtime *rt);

/* The status the process should exit with: 0, 1 after an unawaited error, or
 * the code given to crt.exit. */
CRT_API int crt_exit_code(crt_runtime *rt);

/* A short English description of a CRT_E* code ("a task failed and nobody
 * awaited it", ...); "unknown error" for any other value. */
CRT_API const char *crt_strerror(int code);

/* }================================================================== */

/*
** {==================================================================
** Module entry
** ===================================================================
*/

/* The Lua module entry point: require "crt" from a stock lua5.4 (crt.so).
 * On a state made by crt_open it returns that runtime's crt table. */
CRT_API int luaopen_crt(lua_State *L);

/* }================================================================== */

#ifdef __cplusplus
}
#endif
#endif
