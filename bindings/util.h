/*
 * util.h - what every Lua binding of crt shares: argument and type errors
 * that name the function ("crt.fs.read: bad argument #1 (...)"), the
 * nil/message/code triple of a failed I/O call, checked userdata boxes,
 * class (metatable) registration and the crt.Cancelled value.
 *
 * Any thread: each function works on the Lua state it is given. The engine
 * (runtime/) never includes this header: it returns codes and messages, and
 * the bindings turn them into Lua errors with these functions.
 */
#ifndef CRT_UTIL_H
#define CRT_UTIL_H

#include <lauxlib.h>
#include <lua.h>

#if defined(__GNUC__)
#define CRT_NORETURN __attribute__((noreturn))
#else
#define CRT_NORETURN
#endif

/* Raise a Lua error naming the function: "<where><fname>: <fmt...>". */
CRT_NORETURN int crt_errorf(lua_State *L, const char *fname, const char *fmt, ...);
/* Raise "<fname>: bad argument #<arg> (<msg>)". `arg` is a stack index; as
 * in luaL_argerror, a method call (o:m(x)) does not count self, and a bad
 * self reads "<fname>: bad self (<msg>)". */
CRT_NORETURN int crt_argerror(lua_State *L, const char *fname, int arg, const char *msg);
/* Raise "<fname>: bad argument #<arg> (<tname> expected, got <type>)". */
CRT_NORETURN int crt_typeerror(lua_State *L, const char *fname, int arg, const char *tname);
/* Push nil, message, code for a libuv error; returns 3. `what` (may be NULL)
 * prefixes the message: "<what>: <uv_strerror>". */
int crt_pushfail(lua_State *L, int uverr, const char *what);

/* The userdata at idx when its metatable is the one registered as `mt`,
 * else raise crt_typeerror(L, fname, idx, tname). */
void *crt_checkbox(lua_State *L, int idx, const char *mt, const char *tname, const char *fname);
/* The same for a box holding a pointer (T **): the pointer it holds, which
 * may be NULL (a closed object: the caller decides what that means). */
void *crt_checkptr(lua_State *L, int idx, const char *mt, const char *tname, const char *fname);

/* Register a class once per state: the metatable `mt` with __index set to a
 * table of `methods` and the metamethods `meta` (__gc, __tostring, __close,
 * ...; either list may be NULL). The nup values on top of the stack are
 * given to every function as upvalues (as luaL_setfuncs) and popped. Leaves
 * nothing else on the stack. Returns 1 when the class was created now, 0 when
 * it existed. */
int crt_newclass(lua_State *L, const char *mt, const luaL_Reg *methods, const luaL_Reg *meta,
                 int nup);

struct crt_task;
/* The task running L (crt_task_current), or raise "<fname>: must be called
 * from a task (...)" when L is not a task's coroutine. */
struct crt_task *crt_task_require(lua_State *L, const char *fname);

/* Push a new unique crt.Cancelled value (a userdata whose tostring is
 * "crt.Cancelled"), one per state: the caller stores it as crt.Cancelled
 * and hands it to the engine. */
void crt_new_cancelled(lua_State *L);

#endif
