#!/bin/sh
# check_exports.sh HEADER LIB... - the dynamic symbols each shared library
# defines (nm -D --defined-only) must be exactly the API of the public header:
# the functions HEADER declares CRT_API (crt_* and luaopen_crt). Any other
# exported symbol is an engine or binding function leaking out of the
# -fvisibility=hidden build; a missing one is a broken export. Symbols the
# sanitizers' instrumentation adds (__asan*, __odr_asan*, __ubsan*,
# __sanitizer*) are ignored.
set -eu
header=$1
shift
tmp=${TMPDIR:-/tmp}/crt_exports.$$
trap 'rm -f "$tmp".*' EXIT
sed -n 's/^CRT_API[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$header" | sort -u >"$tmp.api"
if ! grep -qx luaopen_crt "$tmp.api" || ! grep -qx crt_open "$tmp.api"; then
  echo "check_exports: cannot read the API of $header" >&2
  exit 1
fi
status=0
for lib in "$@"; do
  nm -D --defined-only "$lib" | awk '{print $NF}' |
    grep -Ev '^(__asan|__odr_asan|__ubsan|__sanitizer)' | sed 's/@.*//' | sort -u >"$tmp.got"
  extra=$(comm -13 "$tmp.api" "$tmp.got")
  missing=$(comm -23 "$tmp.api" "$tmp.got")
  if [ -n "$extra" ]; then
    echo "$lib exports symbols outside crt.h:" $extra >&2
    status=1
  fi
  if [ -n "$missing" ]; then
    echo "$lib does not export:" $missing >&2
    status=1
  fi
  [ -n "$extra$missing" ] || echo "$lib: $(wc -l <"$tmp.got") symbols, all CRT_API"
done
exit $status
