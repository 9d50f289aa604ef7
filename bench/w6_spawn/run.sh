#!/usr/bin/env bash
# W6 (spawn): start 200 children that each send one message back and exit,
# all at once and one after another: crt, Python multiprocessing (fork),
# Node's child_process.fork, and the floor (posix_spawn of lua5.4 with a
# pipe, floor.c, built here). Each implementation prints one RESULT line;
# this runs each RUNS times (default 3), interleaved, and prints every line.
#   bench/w6_spawn/run.sh           CRT=path/to/crt RUNS=5 N=200 bench/w6_spawn/run.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$(dirname "$here")")
crt=${CRT:-$root/build-release/crt}
[ -x "$crt" ] || crt=$root/build/crt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
n=${N:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/floor" "$here/floor.c"
for _ in $(seq "${RUNS:-3}"); do
  "$crt" "$here/crt.lua" "$n"
  "$tmp/floor" "$n" "$(command -v lua5.4)"
  "$py" "$here/py_mp.py" "$n"
  # Node starts a whole runtime per child (~40 ms): fewer children.
  if command -v node >/dev/null; then node "$here/node.js" 50; fi
done
