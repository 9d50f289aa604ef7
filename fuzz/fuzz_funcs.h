/*
 * fuzz/fuzz_funcs.h - the Lua functions whose bytecode the fuzz target
 * accepts when it fuzzes with functions allowed, and the seed corpus
 * generator's inputs. Both compile them with the same chunk name, so the
 * bytecode the generator writes into seeds is exactly what the target allows.
 *
 * Each chunk returns a function (or a table of functions sharing upvalues).
 */
#ifndef CRT_FUZZ_FUNCS_H
#define CRT_FUZZ_FUNCS_H

#define FUZZ_CHUNKNAME "=fuzz"

static const char *const fuzz_funcs[] = {
    "return function(a, b) return a + b end",
    "local x, t = 1, {1, 2} return function() return x, t, print end",
    "local n = 0 return {function() n = n + 1 return n end, function() return n end}",
    "local function f(k) if k <= 1 then return 1 end return k * f(k - 1) end return f",
    "local a, b, c, d = 1, 'two', {}, nil return function(...) return a, b, c, d, ... end",
    NULL};

#endif
