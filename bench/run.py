#!/usr/bin/env python3
"""Run crt's benchmarks against their peers and report ratios and targets.

Called by scripts/bench (which builds crt and installs the peers first); it can
also be run on its own:

    python3 bench/run.py [--crt PATH] [--runs 3] [--quick] [--markdown FILE]
                         [--json FILE] [w1] [w2] [startup]

Every implementation runs once unrecorded (`--warmup`) and then `--runs`
times (default 3), the implementations interleaved round-robin so that a slow spell of the machine hits all of them
alike, and the MEDIAN of the runs is reported: wall time, peak RSS and CPU time
(user + system) each take their own median. Wall time is measured around the
child process by this script (fork to exit, start-up included); peak RSS and
CPU time come from the child's rusage (wait4), so no other tool is needed.
Every implementation checks its own result and exits non-zero when it is
wrong; this script also checks what it prints.

Only the standard library is used, so any python3 >= 3.8 runs it.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
W1 = os.path.join(BENCH, "w1_sleep")
W2 = os.path.join(BENCH, "w2_pingpong")

BYTES_TARGET = 1331  # 1.3 KiB per waiting task


# --------------------------------------------------------------------------
# Running one process


class Result:
    """One run of one command."""

    def __init__(self, wall, maxrss_kib, cpu, code, out, err):
        self.wall = wall
        self.maxrss_kib = maxrss_kib
        self.cpu = cpu
        self.code = code
        self.out = out
        self.err = err


# Peak RSS: Linux carries a process's high-water mark across exec, so a child
# forked (or vforked) from this Python process would report at least Python's
# own ~17 MiB. GNU time is a small C program: the child it forks starts from
# about 1.5 MiB, well under any runtime measured here. Without GNU time the
# runner falls back on its own wait4 rusage and says so in the report.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_once(argv, timeout, cwd):
    """Run argv; return a Result with wall time, peak RSS and CPU time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as usage:
        cmd = argv
        if GNU_TIME:
            cmd = [GNU_TIME, "-f", "%M %U %S", "-o", usage.name] + argv
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, cwd=cwd)
        # Block in wait4 (precise timing); a timer kills a run that hangs.
        killer = threading.Timer(timeout, kill_tree, (proc,))
        killer.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        timed_out = not killer.is_alive() and wall >= timeout
        killer.cancel()
        proc.returncode = 0  # reaped here; keep Popen from waiting again
        if timed_out:
            code = "timeout"
        elif os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
        else:
            code = "signal %d" % os.WTERMSIG(status)
        maxrss, cpu = ru.ru_maxrss, ru.ru_utime + ru.ru_stime
        if GNU_TIME:
            last = (usage.read().strip().splitlines() or [""])[-1].split()
            if len(last) == 3:
                maxrss, cpu = int(last[0]), float(last[1]) + float(last[2])
            elif code == 0:
                code = "no usage from GNU time"
        out.seek(0)
        err.seek(0)
        return Result(wall, maxrss, cpu, code,
                      out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"))


def kill_tree(proc):
    """Kill a run that hangs: GNU time's child first, then GNU time."""
    for line in capture(["pgrep", "-P", str(proc.pid)]).split():
        try:
            os.kill(int(line), 9)
        except (ValueError, OSError):
            pass
    proc.kill()


class Impl:
    """One implementation of a benchmark: a label and a command line."""

    def __init__(self, key, label, argv, expect, note=""):
        self.key = key
        self.label = label
        self.argv = argv
        self.expect = expect  # exact expected stdout (stripped)
        self.note = note
        self.runs = []
        self.failure = None

    def ok(self):
        return self.failure is None and bool(self.runs)

    def med(self, attr):
        return statistics.median(getattr(r, attr) for r in self.runs)


def run_all(impls, runs, timeout, log, warmup=1):
    """Run every implementation `warmup` + `runs` times, interleaved; keep
    the last `runs` (the warm-up round fills the page cache and wakes the
    CPU up); record failures."""
    for rep in range(-warmup, runs):
        for impl in impls:
            if impl.failure:
                continue
            log("  [%s] %s: %s" % ("warm-up" if rep < 0 else "%d/%d" % (rep + 1, runs), impl.label,
                                   " ".join(shorten(a) for a in impl.argv)))
            r = run_once(impl.argv, timeout, BENCH)
            if r.code != 0 or r.out.strip() != impl.expect:
                tail = (r.err.strip() or r.out.strip())[-600:]
                impl.failure = "exit %s, printed %r; %s" % (
                    r.code, r.out.strip()[:60], tail)
                log("    FAILED: " + impl.failure)
                continue
            if rep >= 0:
                impl.runs.append(r)
            log("    %.3f s, %d KiB" % (r.wall, r.maxrss_kib))


def shorten(arg):
    if arg.startswith(ROOT + "/"):
        return os.path.relpath(arg, ROOT)
    return arg


# --------------------------------------------------------------------------
# The tools


class Tools:
    def __init__(self, crt):
        self.crt = crt
        self.lua = shutil.which("lua5.4")
        self.node = shutil.which("node") or shutil.which("nodejs")
        # Debian's python3 when present: a version manager's shim (pyenv) is a
        # shell script that would add its own start-up to every run.
        self.python = None
        for cand in ("/usr/bin/python3", shutil.which("python3")):
            if cand and os.access(cand, os.X_OK):
                real = capture([cand, "-c", "import sys; print(sys.executable)"])
                self.python = real.strip() or cand
                break
        self.hyperfine = shutil.which("hyperfine")
        self.has_luv = bool(self.lua) and capture(
            [self.lua, "-e", "require 'luv' print('yes')"]).strip() == "yes"

    def missing(self):
        out = []
        if not (self.crt and os.access(self.crt, os.X_OK)):
            out.append("crt (%s)" % self.crt)
        for name in ("lua", "node", "python"):
            if not getattr(self, name):
                out.append(name)
        if not self.has_luv:
            out.append("luv for lua5.4 (lua-luv)")
        return out


def capture(argv, **kw):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30,
                              **kw).stdout.decode(errors="replace")
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------
# W1: N tasks sleeping 50 ms


def bench_w1(tools, args, log):
    n = 10_000 if args.quick else 100_000
    progs = []
    if tools.crt:
        progs.append(("crt", "crt (spawn, no handles)", [tools.crt, os.path.join(W1, "crt.lua")], ""))
        progs.append(("crt_await", "crt (keep handles, await)", [tools.crt, os.path.join(W1, "crt_await.lua")], ""))
    if tools.lua and tools.has_luv:
        progs.append(("luv", "luv (lua5.4 coroutines + uv timers)", [tools.lua, os.path.join(W1, "lua_luv.lua")], ""))
    if tools.node:
        progs.append(("node", "Node.js (promises + setTimeout)", [tools.node, os.path.join(W1, "node.js")], ""))
    if tools.python:
        progs.append(("asyncio", "Python asyncio (gather + sleep)", [tools.python, os.path.join(W1, "py_asyncio.py")], ""))

    full = [Impl(k, l, a + [str(n)], str(n)) for k, l, a, _ in progs]
    # The same program with N = 0: the runtime, its modules and the script,
    # without a single task. Its peak RSS is subtracted to get bytes per task.
    empty = [Impl(k + "_0", l + ", N = 0", a + ["0"], "0") for k, l, a, _ in progs]
    log("W1: %d tasks each sleeping 50 ms (and N = 0 for the baseline)" % n)
    run_all(full + empty, args.runs, args.timeout, log, args.warmup)

    rows = []
    base = {i.key[:-2]: i for i in empty}
    for impl in full:
        row = {"key": impl.key, "label": impl.label, "ok": impl.ok(),
               "failure": impl.failure}
        if impl.ok():
            row["wall"] = impl.med("wall")
            row["cpu"] = impl.med("cpu")
            row["rss_kib"] = impl.med("maxrss_kib")
            row["walls"] = [r.wall for r in impl.runs]
            b = base[impl.key]
            if b.ok():
                row["rss0_kib"] = b.med("maxrss_kib")
                row["bytes_per_task"] = (row["rss_kib"] - row["rss0_kib"]) * 1024 / n
        rows.append(row)

    crt = find(rows, "crt")
    targets = []
    if crt and crt["ok"]:
        for r in rows:
            if r["key"].startswith("crt") or not r["ok"]:
                continue
            targets.append(target(
                "crt faster than %s" % r["label"],
                "%.3f s vs %.3f s (%.2fx)" % (crt["wall"], r["wall"], r["wall"] / crt["wall"]),
                crt["wall"] < r["wall"]))
        if "bytes_per_task" in crt:
            targets.append(target(
                "crt under 1.3 KiB (%d bytes) per waiting task" % BYTES_TARGET,
                "%.0f bytes per task" % crt["bytes_per_task"],
                crt["bytes_per_task"] < BYTES_TARGET))
    elif crt:
        targets.append(target("crt runs W1", crt["failure"], False))
    return {"name": "W1", "title": "W1: %s tasks each sleeping 50 ms, then counting" % f"{n:,}",
            "n": n, "rows": rows, "targets": targets, "ref": "crt"}


# --------------------------------------------------------------------------
# W2: ping-pong through channels


def bench_w2(tools, args, log):
    n = 100_000 if args.quick else 1_000_000
    expect = str(n * (n + 1) // 2)
    impls = []
    for cap in (0, 1):
        if tools.crt:
            impls.append(Impl("crt%d" % cap, "crt, crt.channel(%d)" % cap,
                              [tools.crt, os.path.join(W2, "crt.lua"), str(n), str(cap)], expect))
        if tools.lua:
            impls.append(Impl("coro%d" % cap, "Lua 5.4 coroutines, Lua channel(%d)" % cap,
                              [tools.lua, os.path.join(W2, "lua_coro.lua"), str(n), str(cap)], expect))
        if tools.node:
            impls.append(Impl("node%d" % cap, "Node.js, promise channel(%d)" % cap,
                              [tools.node, os.path.join(W2, "node.js"), str(n), str(cap)], expect))
    if tools.python:
        impls.append(Impl("asyncio", "Python asyncio.Queue(maxsize=1)",
                          [tools.python, os.path.join(W2, "py_asyncio.py"), str(n)], expect))
    log("W2: %d round trips between two tasks" % n)
    run_all(impls, args.runs, args.timeout, log, args.warmup)

    rows = []
    for impl in impls:
        row = {"key": impl.key, "label": impl.label, "ok": impl.ok(),
               "failure": impl.failure}
        if impl.ok():
            row["wall"] = impl.med("wall")
            row["cpu"] = impl.med("cpu")
            row["rss_kib"] = impl.med("maxrss_kib")
            row["walls"] = [r.wall for r in impl.runs]
            row["ns_per_trip"] = row["wall"] * 1e9 / n
        rows.append(row)

    targets = []
    for cap, primary in ((0, True), (1, False)):
        crt = find(rows, "crt%d" % cap)
        if not crt:
            continue
        tag = "" if primary else " [capacity 1]"
        if not crt["ok"]:
            targets.append(target("crt runs W2" + tag, crt["failure"], False))
            continue
        coro = find(rows, "coro%d" % cap)
        if coro and coro["ok"]:
            f = coro["wall"] / crt["wall"]
            targets.append(target("crt >= 3x faster than Lua coroutines" + tag,
                                  "%.2fx (%.3f s vs %.3f s)" % (f, crt["wall"], coro["wall"]), f >= 3))
        py = find(rows, "asyncio")
        if py and py["ok"]:
            f = py["wall"] / crt["wall"]
            targets.append(target("crt >= 30x faster than asyncio.Queue" + tag,
                                  "%.1fx (%.3f s vs %.3f s)" % (f, crt["wall"], py["wall"]), f >= 30))
        node = find(rows, "node%d" % cap)
        if node and node["ok"]:
            f = crt["wall"] / node["wall"]
            targets.append(target("crt within 1.3x of Node.js" + tag,
                                  "crt takes %.2fx Node's time (%.3f s vs %.3f s)" % (f, crt["wall"], node["wall"]),
                                  f <= 1.3))
    return {"name": "W2", "title": "W2: %s round trips between two tasks through two channels" % f"{n:,}",
            "n": n, "rows": rows, "targets": targets, "ref": "crt0"}


# --------------------------------------------------------------------------
# Start-up


def bench_startup(tools, args, log):
    cmds = []
    if tools.crt:
        cmds.append(("crt", "crt -e ''", [tools.crt, "-e", ""]))
    if tools.lua:
        cmds.append(("lua", "lua5.4 -e ''", [tools.lua, "-e", ""]))
        if tools.has_luv:
            cmds.append(("luv", "lua5.4 -e 'require \"luv\"'", [tools.lua, "-e", "require 'luv'"]))
    if tools.python:
        cmds.append(("python", "python3 -c ''", [tools.python, "-c", ""]))
    if tools.node:
        cmds.append(("node", "node -e ''", [tools.node, "-e", ""]))
    runs = 10 if args.quick else 50
    warmup = 2 if args.quick else 5
    log("Start-up: %d runs after %d warm-up runs each" % (runs, warmup))

    rows = []
    method = None
    for key, label, argv in cmds:
        row = {"key": key, "label": label, "ok": False, "failure": None}
        times = None
        if tools.hyperfine:
            method = "hyperfine -N --warmup %d --runs %d" % (warmup, runs)
            times, fail = hyperfine(tools.hyperfine, argv, warmup, runs)
            if fail:
                row["failure"] = fail
        else:
            method = "this runner, %d timed runs after %d warm-up runs" % (runs, warmup)
            times = []
            for i in range(warmup + runs):
                r = run_once(argv, 30, BENCH)
                if r.code != 0:
                    row["failure"] = "exit %s: %s" % (r.code, r.err.strip()[-300:])
                    times = None
                    break
                if i >= warmup:
                    times.append(r.wall)
        if times:
            row.update(ok=True, wall=statistics.median(times),
                       mean=statistics.mean(times),
                       stdev=statistics.stdev(times) if len(times) > 1 else 0.0,
                       min=min(times))
            rss = []
            for _ in range(3):
                r = run_once(argv, 30, BENCH)
                rss.append(r.maxrss_kib)
            row["rss_kib"] = statistics.median(rss)
            log("  %s: median %.2f ms, %d KiB" % (label, row["wall"] * 1e3, row["rss_kib"]))
        else:
            log("  %s: FAILED %s" % (label, row["failure"]))
        rows.append(row)

    targets = []
    crt, lua = find(rows, "crt"), find(rows, "lua")
    if crt and lua and crt["ok"] and lua["ok"]:
        f = crt["wall"] / lua["wall"]
        targets.append(target("crt start-up within 2x of lua5.4",
                              "%.2fx (%.2f ms vs %.2f ms, medians)" % (f, crt["wall"] * 1e3, lua["wall"] * 1e3),
                              f <= 2))
    elif crt and not crt["ok"]:
        targets.append(target("crt starts", crt["failure"], False))
    return {"name": "startup", "title": "Start-up: an empty chunk (%s)" % method,
            "rows": rows, "targets": targets, "ref": "crt"}


def hyperfine(exe, argv, warmup, runs):
    with tempfile.NamedTemporaryFile(suffix=".json") as js:
        # -N runs the command without a shell; it splits the command line
        # like a shell would, so quote each argument.
        cmd = " ".join(shell_quote(a) for a in argv)
        p = subprocess.run([exe, "-N", "--warmup", str(warmup), "--runs", str(runs),
                            "--style", "none", "--export-json", js.name, cmd],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            return None, p.stderr.decode(errors="replace").strip()[-300:]
        data = json.load(open(js.name))
        return data["results"][0]["times"], None


def shell_quote(s):
    if s and re.fullmatch(r"[\w@%+=:,./-]+", s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------
# Reporting


def find(rows, key):
    for r in rows:
        if r["key"] == key:
            return r
    return None


def target(what, detail, passed):
    return {"what": what, "detail": detail, "pass": bool(passed)}


def columns(bench):
    """Column titles and a function from row to cells, per benchmark."""
    ref = find(bench["rows"], bench["ref"])
    refwall = ref["wall"] if ref and ref["ok"] else None

    def ratio(r):
        if not refwall:
            return "-"
        return "%.2f" % (r["wall"] / refwall)

    if bench["name"] == "W1":
        titles = ["implementation", "wall (s)", "CPU (s)", "peak RSS (MiB)",
                  "RSS at N=0 (MiB)", "bytes/task", "time vs crt"]

        def cells(r):
            return [r["label"], "%.3f" % r["wall"], "%.3f" % r["cpu"],
                    "%.1f" % (r["rss_kib"] / 1024),
                    "%.1f" % (r["rss0_kib"] / 1024) if "rss0_kib" in r else "-",
                    "%.0f" % r["bytes_per_task"] if "bytes_per_task" in r else "-",
                    ratio(r)]
    elif bench["name"] == "W2":
        titles = ["implementation", "wall (s)", "CPU (s)", "ns/round trip",
                  "peak RSS (MiB)", "time vs crt(0)"]

        def cells(r):
            return [r["label"], "%.3f" % r["wall"], "%.3f" % r["cpu"],
                    "%.0f" % r["ns_per_trip"], "%.1f" % (r["rss_kib"] / 1024), ratio(r)]
    else:
        titles = ["command", "median (ms)", "mean ± σ (ms)", "min (ms)",
                  "peak RSS (MiB)", "time vs crt"]

        def cells(r):
            return [r["label"], "%.2f" % (r["wall"] * 1e3),
                    "%.2f ± %.2f" % (r["mean"] * 1e3, r["stdev"] * 1e3),
                    "%.2f" % (r["min"] * 1e3), "%.1f" % (r["rss_kib"] / 1024), ratio(r)]
    return titles, cells


def table_rows(bench):
    titles, cells = columns(bench)
    body = []
    for r in bench["rows"]:
        if r["ok"]:
            body.append(cells(r))
        else:
            body.append([r["label"], "FAILED"] + [""] * (len(titles) - 2))
    return titles, body


def text_report(benches, info):
    lines = []
    lines.append("crt benchmarks, %s, %s" % (info["date"], info["cpu"]))
    lines.append("(median of %d runs; time vs crt = implementation's wall time / crt's)" % info["runs"])
    for b in benches:
        titles, body = table_rows(b)
        widths = [max(len(str(x)) for x in col) for col in zip(titles, *body)]
        lines.append("")
        lines.append(b["title"])
        fmt = lambda row: "  ".join(  # noqa: E731
            (str(c).ljust(w) if i == 0 else str(c).rjust(w)) for i, (c, w) in enumerate(zip(row, widths)))
        lines.append(fmt(titles))
        lines.append("  ".join("-" * w for w in widths))
        for row in body:
            lines.append(fmt(row))
        for r in b["rows"]:
            if not r["ok"]:
                lines.append("  %s FAILED: %s" % (r["label"], r["failure"]))
        for t in b["targets"]:
            lines.append("  %-4s %s: %s" % ("PASS" if t["pass"] else "MISS", t["what"], t["detail"]))
    return "\n".join(lines) + "\n"


def md_cell(s):
    return str(s).replace("|", "\\|")


def markdown_report(benches, info):
    out = []
    out.append("Measured on %s with `scripts/bench` (median of %d runs per implementation, "
               "implementations interleaved)." % (info["date"], info["runs"]))
    out.append("")
    out.append("| machine | |")
    out.append("|---|---|")
    for k in ("cpu", "cores", "memory", "kernel", "os", "crt", "commit", "lua", "luv", "libuv",
              "node", "python", "compiler", "hyperfine", "memory measure", "load"):
        if info.get(k):
            out.append("| %s | %s |" % (k, md_cell(info[k])))
    for b in benches:
        titles, body = table_rows(b)
        out.append("")
        out.append("### " + b["title"])
        out.append("")
        out.append("| " + " | ".join(titles) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(titles) - 1)) + "|")
        for row in body:
            out.append("| " + " | ".join(md_cell(c) for c in row) + " |")
        fails = [r for r in b["rows"] if not r["ok"]]
        if fails or b["targets"]:
            out.append("")
        for r in fails:
            out.append("- %s FAILED: `%s`" % (r["label"], r["failure"]))
        for t in b["targets"]:
            out.append("- **%s** %s: %s" % ("PASS" if t["pass"] else "MISS", t["what"], t["detail"]))
    return "\n".join(out) + "\n"


def machine_info(tools, runs):
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "runs": runs}
    lscpu = capture(["lscpu"])
    m = re.search(r"Model name:\s*(.+)", lscpu)
    info["cpu"] = m.group(1).strip() if m else platform.processor()
    info["cores"] = str(os.cpu_count())
    try:
        mem = open("/proc/meminfo").read()
        kib = int(re.search(r"MemTotal:\s*(\d+)", mem).group(1))
        info["memory"] = "%.1f GiB" % (kib / 1024 / 1024)
    except (OSError, AttributeError):
        pass
    info["kernel"] = platform.release()
    try:
        osr = open("/etc/os-release").read()
        info["os"] = re.search(r'PRETTY_NAME="?([^"\n]+)', osr).group(1)
    except (OSError, AttributeError):
        pass
    if tools.crt:
        info["crt"] = capture([tools.crt, "-v"]).strip().replace("\n", "; ")
    head = capture(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
    if re.fullmatch(r"[0-9a-f]+", head):
        dirty = capture(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).strip()
        info["commit"] = head + (" (with local changes)" if dirty else "")
    else:
        info["commit"] = "none yet"
    if tools.lua:
        info["lua"] = capture([tools.lua, "-v"]).strip().split("  Copyright")[0]
        if tools.has_luv:
            info["luv"] = "lua-luv %s" % (dpkg_version("lua-luv") or "?")
    info["libuv"] = capture(["pkg-config", "--modversion", "libuv"]).strip() or dpkg_version("libuv1")
    if tools.node:
        info["node"] = capture([tools.node, "--version"]).strip()
    if tools.python:
        info["python"] = capture([tools.python, "--version"]).strip() + " (%s)" % tools.python
    cc = capture(["cc", "--version"]).splitlines()
    info["compiler"] = cc[0] if cc else ""
    if tools.hyperfine:
        info["hyperfine"] = capture([tools.hyperfine, "--version"]).strip()
    info["memory measure"] = ("peak RSS from GNU time (%M)" if GNU_TIME else
                              "peak RSS from wait4 rusage (includes the runner's own RSS: install GNU time)")
    try:
        info["load"] = "load average %s before the run" % " ".join(
            open("/proc/loadavg").read().split()[:3])
    except OSError:
        pass
    return info


def dpkg_version(pkg):
    return capture(["dpkg-query", "-W", "-f", "${Version}", pkg]).strip()


# --------------------------------------------------------------------------


BENCHES = {"w1": bench_w1, "w2": bench_w2, "startup": bench_startup}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("benchmarks", nargs="*", help="w1, w2, startup (default: all)")
    ap.add_argument("--crt", default=os.path.join(ROOT, "build-release", "crt"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first (W1, W2)")
    ap.add_argument("--timeout", type=float, default=180, help="seconds per run")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for trying the runner")
    ap.add_argument("--markdown", metavar="FILE", action="append", default=[],
                    help="also write the results as markdown ('-': stdout); may be repeated")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    ap.add_argument("--allow-missing", action="store_true",
                    help="run what can be run when crt or a peer is missing")
    args = ap.parse_args()

    names = [b.lower() for b in args.benchmarks] or list(BENCHES)
    for b in names:
        if b not in BENCHES:
            ap.error("unknown benchmark %r (known: %s)" % (b, ", ".join(BENCHES)))

    tools = Tools(os.path.abspath(args.crt))
    missing = tools.missing()
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        if not args.allow_missing:
            return 2
        if not os.access(tools.crt, os.X_OK):
            tools.crt = None

    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        load1 = float(open("/proc/loadavg").read().split()[0])
        if load1 > 0.7:
            log("warning: load average %.2f: something else is running; the numbers will be noisy" % load1)
    except (OSError, ValueError):
        pass
    info = machine_info(tools, args.runs)
    benches = [BENCHES[b](tools, args, log) for b in names]

    text = text_report(benches, info)
    md = markdown_report(benches, info)
    if "-" in args.markdown:
        sys.stderr.write(text)
        sys.stdout.write(md)
    else:
        sys.stdout.write(text)
    for path in args.markdown:
        if path != "-":
            with open(path, "w") as f:
                f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "benchmarks": benches}, f, indent=1)

    failed = any(not r["ok"] for b in benches for r in b["rows"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
