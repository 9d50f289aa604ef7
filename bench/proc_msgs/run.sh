#!/usr/bin/env bash
# Message throughput parent <-> child: small messages streamed, round trips,
# 1 MiB messages, for crt, Python multiprocessing (Pipe and Queue) and
# Node's IPC channel. Each implementation prints one RESULT line; this runs
# each RUNS times (default 3), interleaved, and prints every line.
#   bench/proc_msgs/run.sh          CRT=path/to/crt RUNS=5 bench/proc_msgs/run.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$(dirname "$here")")
crt=${CRT:-$root/build-release/crt}
[ -x "$crt" ] || crt=$root/build/crt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
for _ in $(seq "${RUNS:-3}"); do
  "$crt" "$here/crt.lua"
  "$py" "$here/py_mp.py"
  if command -v node >/dev/null; then node "$here/node.js"; fi
done
