#!/usr/bin/env bash
# scripts/layers.sh ROOT - checks the layering rule of crt's sources under ROOT
# (a repository root, or a throwaway tree laid out like one):
#
#   runtime/ (every .c and .h, recursively) is the engine: it includes no header
#     of bindings/ and registers no Lua function, checks no Lua argument and
#     raises no Lua error: no luaL_Reg, luaL_check*, luaL_opt*, luaL_error,
#     luaL_argerror, luaL_newmetatable, luaL_setfuncs, lua_error(, crt_errorf,
#     crt_argerror, crt_typeerror (outside comments and string literals).
#     A line whose comment says "layers: unwind" is a reviewed exception: a
#     raise that never leaves the engine (caught by the engine's own lua_pcall
#     and returned as a code) or the scheduler delivering crt.Cancelled into a
#     parked task, which is the park protocol (docs/architecture.md).
#   cli/ is a client of the public headers: of runtime/ it includes only
#     include/crt.h and include/crt_child.h, and nothing of bindings/.
#
# An #include "X" (or <X>) is resolved the way the build finds it: next to the
# including file, then in runtime/include/, runtime/, bindings/ and ROOT; the
# bindings headers are therefore whatever bindings/ holds at run time, and a
# runtime/ header of the same name as a bindings/ one is the runtime's.
#
# Prints one line per violation, "path:line: what" (path relative to ROOT),
# then a summary. Exits 0 when the tree follows the rule, 1 when it does not,
# 2 on a usage error. Run by scripts/lint (also --fast); its own test is
# tests/scripts/test_layers.sh (ctest lint_layers).
set -euo pipefail

if [[ $# -ne 1 || ! -d "$1/runtime" ]]; then
  echo "usage: scripts/layers.sh ROOT (a tree with runtime/, bindings/, cli/)" >&2
  exit 2
fi
root="$(cd "$1" && pwd -P)"
cd "$root"

files=()
for d in runtime cli; do
  [[ -d "$d" ]] || continue
  mapfile -t -O "${#files[@]}" files < <(find "$d" -type f \( -name '*.c' -o -name '*.h' \) | sort)
done
if [[ ${#files[@]} -eq 0 ]]; then
  echo "layers: ok (no C files)"
  exit 0
fi

# One pass over the files: "INC path line name" for each #include, "USE path
# line name" for each forbidden name in runtime/ (comments and strings removed
# first; the state of a block comment carries over lines).
scan() {
  awk '
    function strip(s,   out, i, n, c, c2, q) {
      out = ""; n = length(s); i = 1; q = ""
      while (i <= n) {
        c = substr(s, i, 1); c2 = substr(s, i, 2)
        if (incomment) { if (c2 == "*/") { incomment = 0; i += 2 } else i++; continue }
        if (q != "") { if (c == "\\") i += 2; else { if (c == q) q = ""; i++ }; continue }
        if (c2 == "/*") { incomment = 1; out = out " "; i += 2; continue }
        if (c2 == "//") break
        if (c == "\"" || c == "\047") { q = c; out = out c c; i++; continue }
        out = out c; i++
      }
      return out
    }
    # uses(line, re, call): report each match of re; call: re ends with "(".
    function uses(line, re, call,   name) {
      while (match(line, re)) {
        name = substr(line, RSTART, RLENGTH)
        line = substr(line, RSTART + RLENGTH - (call ? 0 : 1))
        gsub(/[^A-Za-z0-9_]/, "", name)
        print "USE", FILENAME, FNR, name (call ? "(" : "")
      }
    }
    FNR == 1 { incomment = 0 }
    {
      if (!incomment && match($0, /^[ \t]*#[ \t]*include[ \t]*[<"][^>"]+[>"]/)) {
        inc = substr($0, RSTART, RLENGTH)
        sub(/^[ \t]*#[ \t]*include[ \t]*[<"]/, "", inc)
        sub(/[>"]$/, "", inc)
        print "INC", FILENAME, FNR, inc
      }
      line = strip($0)
      if (FILENAME !~ /^runtime\//) next
      # A reviewed exception: the engine unwinds inside its own protected
      # call (which returns a code), or delivers crt.Cancelled into a parked
      # task (the park protocol). The marker sits in a comment on the line.
      if ($0 ~ /layers: unwind/) { nallow++; next }
      uses(line, "(^|[^A-Za-z0-9_])(luaL_Reg|luaL_check[A-Za-z0-9_]*|luaL_opt[A-Za-z0-9_]*|luaL_error|luaL_argerror|luaL_newmetatable|luaL_setfuncs|crt_errorf|crt_argerror|crt_typeerror)([^A-Za-z0-9_]|$)", 0)
      uses(line, "(^|[^A-Za-z0-9_])lua_error[ \t]*[(]", 1)
    }
  ' "$@"
}

# normalize PATH: sets norm to PATH without "." and "dir/.." parts (no
# subprocess: this runs once per #include).
normalize() {
  local IFS=/ part parts out=()
  read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    case "$part" in
      '' | .) ;;
      ..)
        if [[ ${#out[@]} -gt 0 && "${out[-1]}" != .. ]]; then
          unset 'out[-1]'
        else
          out+=(..)
        fi
        ;;
      *) out+=("$part") ;;
    esac
  done
  norm="${out[*]}"
}

# resolve FILE NAME: sets target to the path (relative to ROOT) that the
# include NAME of FILE names, or "" when it is none of ours (a system header).
resolve() {
  local dir
  target=""
  for dir in "${1%/*}" runtime/include runtime bindings .; do
    [[ -f "$dir/$2" ]] || continue
    normalize "$dir/$2"
    if [[ "$norm" != ../* ]]; then
      target="$norm"
      return
    fi
  done
}

nbad=0
bad() {
  echo "$1:$2: $3"
  nbad=$((nbad + 1))
}

while read -r kind file line name; do
  if [[ "$kind" == USE ]]; then
    bad "$file" "$line" "uses $name: runtime/ registers no Lua function, checks no Lua argument, raises no Lua error"
    continue
  fi
  resolve "$file" "$name"
  [[ -n "$target" ]] || continue
  case "$file:$target" in
    runtime/*:bindings/*)
      bad "$file" "$line" "includes \"$name\" ($target): runtime/ must not include a header of bindings/"
      ;;
    cli/*:bindings/*)
      bad "$file" "$line" "includes \"$name\" ($target): cli/ must not include a header of bindings/"
      ;;
    cli/*:runtime/include/crt.h | cli/*:runtime/include/crt_child.h) ;;
    cli/*:runtime/*)
      bad "$file" "$line" "includes \"$name\" ($target): cli/ may include only runtime/include/crt.h and crt_child.h"
      ;;
  esac
done < <(scan "${files[@]}")

if [[ $nbad -gt 0 ]]; then
  echo "layers: $nbad violation(s) of the layering rule in $root (see the top of scripts/layers.sh)"
  exit 1
fi
echo "layers: ok (${#files[@]} files)"
