#!/usr/bin/env bash
# tests/scripts/test_layers.sh SOURCE_DIR - the test of scripts/layers.sh (the
# layering rule's check), registered with ctest as lint_layers by
# tests/tests.cmake. It runs the check on throwaway trees made of small
# synthetic files (a clean one, then one violation at a time: it must fail and
# name the file and line), and on a copy of SOURCE_DIR's runtime/, bindings/
# and cli/ with a violation added (it must name that one, whatever else the
# real tree holds). It does not depend on whether the real tree is clean:
# scripts/lint checks that. Prints "test_layers: ok" or the failed cases and
# exits 1.
set -euo pipefail

src="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
check="$src/scripts/layers.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
nfail=0
ncase=0

# A clean tree: a runtime header named like a bindings one (runtime/thread.h
# and bindings/thread.h: the runtime's own is found first), the forbidden names
# in comments and strings only, bindings using them freely, cli on crt.h.
clean_tree() {
  local t="$tmp/tree"
  rm -rf "$t"
  mkdir -p "$t/runtime/include" "$t/runtime/sub" "$t/bindings" "$t/cli"
  printf '/* crt.h */\nint crt_x(void);\n' >"$t/runtime/include/crt.h"
  printf '/* crt_child.h */\n' >"$t/runtime/include/crt_child.h"
  printf '#include "include/crt.h"\nint rt_x(void);\n' >"$t/runtime/rt.h"
  printf '/* the engine thread */\nint thread_x(void);\n' >"$t/runtime/thread.h"
  cat >"$t/runtime/chan.c" <<'EOF'
/* chan.c - no luaL_error here: the bindings call luaL_error and
 * crt_errorf, and luaL_Reg lives there too. */
#include <lua.h>
#include <stdio.h>

#include "rt.h"
#include "thread.h"

static const char *msg = "luaL_error(L, \"x\") lua_error(L)"; // luaL_checkinteger
int chan_x(lua_State *L) {
  lua_pushstring(L, msg); /* lua_error(L) would raise */
  return lua_gettop(L) + rt_x() + thread_x() + my_lua_error(L) + luaL_errorx(L);
}
EOF
  printf '#include "../rt.h"\nint sub_x(void);\n' >"$t/runtime/sub/sub.h"
  printf '#include "sub.h"\n#include "include/crt.h"\nint sub_x(void) { return 0; }\n' \
    >"$t/runtime/sub/sub.c"
  printf 'int crt_errorf(void *L, const char *f, const char *m);\n' >"$t/bindings/util.h"
  printf 'int thread_open(void *L);\n' >"$t/bindings/thread.h"
  cat >"$t/bindings/chan.c" <<'EOF'
#include <lauxlib.h>

#include "rt.h"
#include "thread.h"
#include "util.h"

static const luaL_Reg methods[] = {{NULL, NULL}};
int bad(lua_State *L) { return luaL_error(L, "x") + luaL_checkinteger(L, 1); }
EOF
  printf '#include <stdio.h>\n\n#include "crt.h"\n#include "crt_child.h"\n#include "include/crt.h"\n#include "repl.h"\n' \
    >"$t/cli/main.c"
  printf 'int repl(void);\n' >"$t/cli/repl.h"
  echo "$t"
}

# expect_ok NAME TREE / expect_fail NAME TREE WANT...: run the check, compare
# its exit status, and look for each WANT (a fixed string) in its output.
run_check() {
  ncase=$((ncase + 1))
  rc=0
  out="$(bash "$check" "$2" 2>&1)" || rc=$?
}
expect_ok() {
  run_check "$@"
  if [[ $rc -ne 0 ]]; then
    echo "FAIL $1: the check failed (exit $rc) on a tree that follows the rule:"
    printf '%s\n' "$out" | sed 's/^/    /'
    nfail=$((nfail + 1))
  fi
}
expect_fail() {
  local name="$1" want
  run_check "$@"
  shift 2
  if [[ $rc -ne 1 ]]; then
    echo "FAIL $name: exit $rc, want 1; output:"
    printf '%s\n' "$out" | sed 's/^/    /'
    nfail=$((nfail + 1))
    return
  fi
  for want in "$@"; do
    if ! grep -qF -- "$want" <<<"$out"; then
      echo "FAIL $name: no \"$want\" in the output:"
      printf '%s\n' "$out" | sed 's/^/    /'
      nfail=$((nfail + 1))
      return
    fi
  done
}

# The clean tree passes.
t="$(clean_tree)"
expect_ok clean "$t"

# A runtime file that includes a bindings header, directly or by a path.
t="$(clean_tree)"
printf '#include "util.h"\n' >>"$t/runtime/chan.c"
expect_fail 'include "util.h"' "$t" "runtime/chan.c:14: includes \"util.h\" (bindings/util.h)"

t="$(clean_tree)"
sed -i '1a #include "../../bindings/thread.h"' "$t/runtime/sub/sub.h"
expect_fail 'include by a relative path' "$t" 'runtime/sub/sub.h:2: includes "../../bindings/thread.h"'

t="$(clean_tree)"
printf '#  include <util.h>\n' >>"$t/runtime/rt.h"
expect_fail 'include <util.h>' "$t" 'runtime/rt.h:3: includes "util.h"'

# A bindings header added later is one too (the list is bindings/ at run time).
t="$(clean_tree)"
printf 'int fresh(void);\n' >"$t/bindings/fresh.h"
printf '#include "fresh.h"\n' >>"$t/runtime/sub/sub.c"
expect_fail 'a new bindings header' "$t" 'runtime/sub/sub.c:4: includes "fresh.h"'

# Each forbidden name in runtime/ code, one at a time, in a .c and in a .h.
names=(luaL_Reg luaL_checkinteger luaL_checkudata luaL_optinteger luaL_error luaL_argerror
  luaL_newmetatable luaL_setfuncs crt_errorf crt_argerror crt_typeerror)
for name in "${names[@]}"; do
  t="$(clean_tree)"
  printf 'int use_%s(lua_State *L) { return (int)(%s) + 1; }\n' "$name" "$name" >>"$t/runtime/chan.c"
  expect_fail "$name in a .c" "$t" "runtime/chan.c:14: uses $name"
done
t="$(clean_tree)"
printf 'static int raise(lua_State *L) { return lua_error (L); }\n' >>"$t/runtime/sub/sub.c"
expect_fail 'lua_error( in a .c' "$t" 'runtime/sub/sub.c:4: uses lua_error('
t="$(clean_tree)"
printf '#define RAISE(L) luaL_error(L, "no")\n' >>"$t/runtime/thread.h"
expect_fail 'luaL_error in a macro of a .h' "$t" 'runtime/thread.h:3: uses luaL_error'

# After a block comment that closes mid-line, code counts again.
t="$(clean_tree)"
printf '/* one\n   two */ static int f(lua_State *L) { return luaL_error(L, "x"); }\n' \
  >>"$t/runtime/chan.c"
expect_fail 'code after a block comment' "$t" 'runtime/chan.c:15: uses luaL_error'

# Two violations at once: both are named.
t="$(clean_tree)"
printf '#include "util.h"\n' >>"$t/runtime/rt.h"
printf 'int g(lua_State *L) { return luaL_error(L, "x"); }\n' >>"$t/runtime/chan.c"
expect_fail 'two violations' "$t" 'runtime/rt.h:3: includes "util.h"' \
  'runtime/chan.c:14: uses luaL_error' 'layers: 2 violation(s)'

# cli/: a runtime header other than crt.h / crt_child.h, or a bindings header.
# A reviewed exception ("layers: unwind" in a comment on the line) exempts
# that line only.
t="$(clean_tree)"
printf 'void f(lua_State *L) { lua_error(L); } /* layers: unwind */\n' >>"$t/runtime/chan.c"
expect_ok 'marked unwind' "$t"
printf 'void g(lua_State *L) { lua_error(L); }\n' >>"$t/runtime/chan.c"
expect_fail 'unmarked raise after a marked one' "$t" 'runtime/chan.c:15: uses lua_error('

t="$(clean_tree)"
printf '#include "rt.h"\n' >>"$t/cli/main.c"
expect_fail 'cli includes rt.h' "$t" 'cli/main.c:7: includes "rt.h" (runtime/rt.h)'
t="$(clean_tree)"
printf '#include "thread.h"\n' >>"$t/cli/main.c"
expect_fail 'cli includes a runtime header named like a bindings one' "$t" \
  'cli/main.c:7: includes "thread.h" (runtime/thread.h)'
t="$(clean_tree)"
printf '#include "util.h"\n' >>"$t/cli/main.c"
expect_fail 'cli includes util.h' "$t" 'cli/main.c:7: includes "util.h" (bindings/util.h)'

# The real sources, copied, with one violation added at a known place: the
# check names it (the copy may hold others while the redesign goes on).
t="$tmp/real"
mkdir -p "$t"
cp -R "$src/runtime" "$src/bindings" "$src/cli" "$t/"
victim="$(cd "$t" && find runtime -name '*.c' | sort | head -n 1)"
n="$(wc -l <"$t/$victim")"
printf 'static int layers_probe(lua_State *L) { return luaL_error(L, "x"); }\n' >>"$t/$victim"
sed -i '1i #include "util.h"' "$t/$victim"
expect_fail 'copy of the real tree' "$t" "$victim:1: includes \"util.h\" (bindings/util.h)" \
  "$victim:$((n + 2)): uses luaL_error"

# Usage errors.
ncase=$((ncase + 1))
rc=0
bash "$check" "$tmp/nonexistent" >/dev/null 2>&1 || rc=$?
if [[ $rc -ne 2 ]]; then
  echo "FAIL usage: exit $rc for a missing tree, want 2"
  nfail=$((nfail + 1))
fi

if [[ $nfail -gt 0 ]]; then
  echo "test_layers: $nfail of $ncase cases failed"
  exit 1
fi
echo "test_layers: ok ($ncase cases)"
