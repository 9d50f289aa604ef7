#!/usr/bin/env bash
# W3 (processes): 8 CPU-bound jobs of ~0.4 s, sequential vs a pool of 2
# worker processes, for crt, Python's ProcessPoolExecutor and Node's
# child_process.fork. Each implementation prints one RESULT line; this
# runs each RUNS times (default 3), interleaved, and prints every line.
#   bench/w3_proc/run.sh            CRT=path/to/crt RUNS=5 bench/w3_proc/run.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$(dirname "$here")")
crt=${CRT:-$root/build-release/crt}
[ -x "$crt" ] || crt=$root/build/crt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
for _ in $(seq "${RUNS:-3}"); do
  "$crt" "$here/crt.lua"
  "$py" "$here/py_pool.py"
  if command -v node >/dev/null; then node "$here/node.js"; fi
done
