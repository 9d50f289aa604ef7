# shellcheck shell=bash
# scripts/deps.sh - helpers sourced by the other scripts: install the Debian
# packages crt needs when they are missing, and configure + build a build
# directory incrementally.
#
#   source scripts/deps.sh
#   crt_need_packages "${CRT_BUILD_PACKAGES[@]}"   # apt-get only what is missing
#   crt_build build -DCMAKE_BUILD_TYPE=Debug        # configure, build quietly
#
# Everything this file prints goes to stderr, so that `scripts/crt` keeps the
# script's own stdout clean.

# The repository root, from this file's own path (works from any cwd).
CRT_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"

# What building crt needs, and what running every test needs on top of it
# (clang and its runtime libraries for the libFuzzer targets).
# shellcheck disable=SC2034 # used by the scripts that source this file
CRT_BUILD_PACKAGES=(cmake gcc make pkg-config liblua5.4-dev libuv1-dev lua5.4)
# shellcheck disable=SC2034
CRT_TEST_PACKAGES=(lua-busted lua-check clang libclang-rt-14-dev valgrind python3 netcat-openbsd socat curl)
# shellcheck disable=SC2034
CRT_LINT_PACKAGES=(lua-check clang-format clang-tidy cppcheck)

crt__apt_updated=0

crt_log() {
  printf '%s\n' "$*" >&2
}

# True when the package is installed (not merely known, or removed with its
# configuration files left behind).
crt_have_package() {
  local status
  status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]]
}

# Install the packages among the arguments that are not installed yet. As root
# apt-get runs directly; otherwise through sudo, and without sudo the command to
# run is printed and the calling script exits 1.
crt_need_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    crt_have_package "$pkg" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0

  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      crt_log "crt: missing packages: ${missing[*]}"
      crt_log "crt: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
      exit 1
    fi
  fi

  crt_log "crt: installing ${missing[*]}"
  # Wait for a concurrent apt/dpkg to release its lock rather than failing.
  local apt_opts=(-o DPkg::Lock::Timeout=600)
  if [[ $crt__apt_updated -eq 0 ]]; then
    "${sudo[@]}" apt-get "${apt_opts[@]}" update -qq >&2
    crt__apt_updated=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# crt_configure DIR [cmake args...]: configure DIR (relative to the repository
# root unless absolute). Always re-run, because it is cheap on a configured
# tree and keeps the test list (read by `ctest -N`) in step with the sources.
# Output goes to DIR/build.log and is shown only on failure.
crt_configure() {
  local dir="$1"
  shift
  [[ "$dir" == /* ]] || dir="$CRT_ROOT/$dir"
  mkdir -p "$dir"
  local log="$dir/build.log"
  # flock: two scripts building the same directory at once wait for each other.
  if ! flock "$dir/.crt-lock" cmake -S "$CRT_ROOT" -B "$dir" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "$@" \
    >"$log" 2>&1; then
    crt_log "crt: cmake configure of $dir failed:"
    tail -n 60 "$log" >&2
    return 1
  fi
}

# crt_build DIR [cmake args...]: crt_configure, then build with one job per
# core, quietly unless it fails. Returns non-zero on failure.
crt_build() {
  local dir="$1"
  [[ "$dir" == /* ]] || dir="$CRT_ROOT/$dir"
  crt_configure "$@" || return 1
  local log="$dir/build.log"
  if ! flock "$dir/.crt-lock" cmake --build "$dir" -j "$(nproc)" >>"$log" 2>&1; then
    crt_log "crt: build of $dir failed (full log: $log):"
    # The first errors are the useful ones.
    if grep -qE 'error|Error' "$log"; then
      grep -E -A 6 'error|Error' "$log" | head -n 120 >&2 || true
    else
      tail -n 80 "$log" >&2
    fi
    return 1
  fi
}
