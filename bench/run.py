#!/usr/bin/env python3
"""Run crt's benchmarks against their peers and report ratios and targets.

Called by scripts/bench (which builds crt and installs the peers first); it can
also be run on its own:

    python3 bench/run.py [--crt PATH] [--runs 3] [--quick] [--markdown FILE]
                         [--json FILE] [BENCHMARK...]

Benchmarks (default: all, in this order): w1 w2 startup w3 w3p w4 w5 w6 msgs w7 idle
(w3 = threads, w3p = processes, msgs = messages between processes).

Every implementation runs once unrecorded (`--warmup`) and then `--runs`
times (default 3), the implementations interleaved round-robin so that a slow spell of the machine hits all of them
alike, and the MEDIAN of the runs is reported: wall time, peak RSS and CPU time
(user + system) each take their own median. Wall time is measured around the
child process by this script (fork to exit, start-up included); peak RSS and
CPU time come from GNU time (or the child's rusage).
Every implementation checks its own result and exits non-zero when it is
wrong; this script also checks what it prints.

W1, W2 and start-up are timed by this script. The other benchmarks are
standalone programs (bench/w3_cpu, w3_proc, w4_tiny, w5_messages, w6_spawn,
proc_msgs, w7_echo) that time themselves and print one line
`RESULT name=value ...`; each value takes its own median over the runs. W3 and
W3p run without the warm-up round (each run takes ~5 s and measures its
sequential half before its parallel half anyway).

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
W3 = os.path.join(BENCH, "w3_cpu")
W3P = os.path.join(BENCH, "w3_proc")
W4 = os.path.join(BENCH, "w4_tiny")
W5 = os.path.join(BENCH, "w5_messages")
W6 = os.path.join(BENCH, "w6_spawn")
MSGS = os.path.join(BENCH, "proc_msgs")
W7 = os.path.join(BENCH, "w7_echo")

BYTES_TARGET = 1331  # 1.3 KiB per waiting task


# --------------------------------------------------------------------------
# Running one process


class Result:
    """One run of one command."""

    def __init__(self, wall, maxrss_kib, cpu, code, out, err):
        self.metrics = None  # RESULT values, for the standalone programs
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


def run_once(argv, timeout, cwd, env=None):
    """Run argv; return a Result with wall time, peak RSS and CPU time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as usage:
        cmd = argv
        if GNU_TIME:
            cmd = [GNU_TIME, "-f", "%M %U %S", "-o", usage.name] + argv
        start = time.perf_counter()
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update(env)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, cwd=cwd, env=full_env)
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
    """One implementation of a benchmark: a label and a command line.

    `expect` is the exact stdout expected (stripped), or None for a program
    that prints a line `RESULT name=value ...`: its values are parsed, with
    `prefix` (e.g. "crt_") taken off the names. `views` splits one program's
    values into several rows of the table: [(key, label, {name: name in the
    RESULT line})]; by default one row with every value."""

    def __init__(self, key, label, argv, expect=None, note="", env=None, prefix="", views=None):
        self.key = key
        self.label = label
        self.argv = argv
        self.expect = expect
        self.note = note
        self.env = env or {}
        self.prefix = prefix
        self.views = views
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
            r = run_once(impl.argv, timeout, BENCH, impl.env)
            if impl.expect is None and r.code == 0:
                r.metrics = parse_result(r.out, impl.prefix)
            if r.code != 0 or (r.out.strip() != impl.expect if impl.expect is not None
                               else r.metrics is None):
                tail = (r.err.strip() or r.out.strip())[-600:]
                impl.failure = "exit %s, printed %r; %s" % (
                    r.code, r.out.strip()[:60], tail)
                log("    FAILED: " + impl.failure)
                continue
            if rep >= 0:
                impl.runs.append(r)
            log("    %.3f s, %d KiB%s" % (r.wall, r.maxrss_kib,
                                         "; " + r.out.strip().splitlines()[-1] if r.metrics else ""))


def parse_result(out, prefix=""):
    """The values of the last `RESULT a=1 b=2.5 ...` line, or None."""
    found = None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            found = line
    if not found:
        return None
    vals = {}
    for name, v in re.findall(r"(\w+)=(\S+)", found):
        try:
            val = float(v)
        except ValueError:
            continue
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        vals[name] = val
    return vals or None


def warm_method(args):
    return "median of %d runs%s, interleaved" % (
        args.runs, " after %d warm-up round%s" % (args.warmup, "s" if args.warmup > 1 else "")
        if args.warmup else "")


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
            "n": n, "rows": rows, "targets": targets, "ref": "crt", "method": warm_method(args)}


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
            "n": n, "rows": rows, "targets": targets, "ref": "crt0", "method": warm_method(args)}


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
# The standalone programs (W3 to W7, messages): RESULT lines


def metric_rows(impls):
    """Rows of the table from implementations that print RESULT lines: every
    value is the median of its runs (taken separately, like wall time)."""
    rows = []
    for impl in impls:
        views = impl.views or [(impl.key, impl.label, None)]
        for key, label, names in views:
            row = {"key": key, "label": label, "ok": impl.ok(), "failure": impl.failure,
                   "note": impl.note, "argv": " ".join(shorten(a) for a in impl.argv)}
            if impl.env:
                row["env"] = impl.env
            if impl.ok():
                row["wall"] = impl.med("wall")
                row["cpu"] = impl.med("cpu")
                row["rss_kib"] = impl.med("maxrss_kib")
                row["walls"] = [r.wall for r in impl.runs]
                names = names or {k: k for k in impl.runs[0].metrics}
                row["m"], row["all"] = {}, {}
                for mine, theirs in names.items():
                    vals = [r.metrics[theirs] for r in impl.runs if theirs in r.metrics]
                    if len(vals) != len(impl.runs):
                        row.update(ok=False, failure="no %s= in its RESULT line" % theirs)
                        break
                    row["m"][mine] = statistics.median(vals)
                    row["all"][mine] = vals
            rows.append(row)
    return rows


def result_bench(name, title, impls, args, log, metrics, ratios, ref, warmup=None, notes=()):
    """Run `impls` interleaved; the bench dict without its targets.
    metrics: [(name, column title, format)]; ratios: [(name, column title,
    higher is better)], each a column 'crt ahead by' against row `ref`."""
    warmup = args.warmup if warmup is None else warmup
    runs = args.runs
    run_all(impls, runs, args.timeout, log, warmup)
    return {"name": name, "title": title, "kind": "result", "rows": metric_rows(impls),
            "metrics": [list(m) for m in metrics], "ratios": [list(r) for r in ratios],
            "ref": ref, "targets": [], "notes": list(notes),
            "method": "median of %d runs%s, interleaved" % (
                runs, " after %d warm-up round%s" % (warmup, "s" if warmup > 1 else "") if warmup else
                ", no warm-up round")}


def val(row, name):
    """A row's median value `name`, or None when the row failed."""
    if row and row["ok"]:
        return row["m"].get(name)
    return None


def ahead(what, crt, peer, name, unit, higher, factor=None, fmt="%.3g"):
    """Target: crt's `name` better than the peer's (strictly), or at least
    `factor` times as good. `what` may hold %s for the peer's label."""
    a, b = val(crt, name), val(peer, name)
    if a is None or b is None:
        return None
    if "%s" in what:
        what = what % peer["label"]
    f = a / b if higher else b / a
    detail = "crt %s %s vs %s %s: crt ahead %.2fx" % (group(fmt % a), unit, group(fmt % b), unit, f)
    if factor is not None:
        detail += " (needs >= %.2gx)" % factor
    return target(what, detail, f >= factor if factor is not None else f > 1.0)


def add_targets(bench, *ts):
    bench["targets"].extend(t for t in ts if t)


def crt_failed(bench, *keys):
    """A MISS line for each crt row that failed."""
    for key in keys:
        r = find(bench["rows"], key)
        if r and not r["ok"]:
            bench["targets"].append(target("%s runs" % r["label"], r["failure"], False))


# W3 (threads): 8 CPU-bound jobs of ~0.4 s, speed-up over sequential


def bench_w3(tools, args, log):
    jobs = "2" if args.quick else "8"
    nproc = str(os.cpu_count() or 2)
    impls = []
    if tools.crt:
        impls.append(Impl("crt", "crt.thread.map (chunk 1)", [tools.crt, os.path.join(W3, "crt.lua"), jobs]))
    if tools.python:
        impls.append(Impl("pythreads", "Python threading (one thread per job)",
                          [tools.python, os.path.join(W3, "py_threads.py"), jobs]))
        impls.append(Impl("ppe", "Python ProcessPoolExecutor(%s)" % nproc,
                          [tools.python, os.path.join(W3, "py_processes.py"), jobs]))
    if tools.node:
        impls.append(Impl("node", "Node.js worker_threads (%s)" % nproc,
                          [tools.node, os.path.join(W3, "node.js"), jobs]))
    if tools.lua and tools.has_luv:
        impls.append(Impl("luv", "luv new_work (UV_THREADPOOL_SIZE=%s)" % nproc,
                          [tools.lua, os.path.join(W3, "lua_luv.lua"), jobs],
                          env={"UV_THREADPOOL_SIZE": nproc}))
    log("W3 (threads): %s CPU-bound jobs, sequential then parallel" % jobs)
    b = result_bench("W3", "W3 (threads): %s CPU-bound jobs of ~0.4 s, sequential then on %s threads, in one process"
                     % (jobs, nproc), impls, args, log,
                     [("speedup", "speed-up", "%.2f"), ("seq_s", "sequential (s)", "%.3f"),
                      ("par_s", "parallel (s)", "%.3f"), ("job_s", "one job (s)", "%.3f")],
                     [], "crt", warmup=0,
                     notes=["speed-up = sequential time / parallel time, both measured by the program; "
                            "%s cores, so %s.0x is the ceiling." % (nproc, nproc),
                            "Each language runs its own iteration count, set so that one job takes about 0.4 s "
                            "(crt and luv 65,000,000, Node 36,000,000, Python 11,000,000)."])
    crt = find(b["rows"], "crt")
    s = val(crt, "speedup")
    if s is not None:
        add_targets(b, target("crt speed-up >= 1.9x", "%.2fx (%.3f s -> %.3f s)" % (
            s, val(crt, "seq_s"), val(crt, "par_s")), s >= 1.9))
    crt_failed(b, "crt")
    return b


# W3p (processes): the same jobs on a pool of 2 worker processes


def bench_w3p(tools, args, log):
    jobs, job = ("2", "0.1") if args.quick else ("8", "0.4")
    impls = []
    if tools.crt:
        impls.append(Impl("crt", "crt.process.pool{size=2}:map (chunk 1)",
                          [tools.crt, os.path.join(W3P, "crt.lua"), jobs, job, "2"], prefix="crt_"))
    if tools.python:
        impls.append(Impl("ppe", "Python ProcessPoolExecutor(2)",
                          [tools.python, os.path.join(W3P, "py_pool.py"), jobs, job, "2"], prefix="py_"))
    if tools.node:
        impls.append(Impl("node", "Node.js child_process.fork pool of 2",
                          [tools.node, os.path.join(W3P, "node.js"), jobs, job, "2"], prefix="node_"))
    log("W3p (processes): %s CPU-bound jobs of %s s, sequential then on 2 processes" % (jobs, job))
    b = result_bench("W3p", "W3p (processes): %s CPU-bound jobs of ~%s s, sequential then on a pool of 2 "
                     "worker processes (pool start included)" % (jobs, job), impls, args, log,
                     [("speedup", "speed-up", "%.2f"), ("seq_s", "sequential (s)", "%.3f"),
                      ("par_s", "parallel (s)", "%.3f"), ("job_s", "one job (s)", "%.3f")],
                     [], "crt", warmup=0,
                     notes=["Each program calibrates its loop so that one job takes ~%s s. "
                            "2.0x is the ceiling on 2 cores." % job])
    crt = find(b["rows"], "crt")
    s = val(crt, "speedup")
    if s is not None:
        add_targets(b, target("crt speed-up >= 1.9x", "%.2fx (%.3f s -> %.3f s)" % (
            s, val(crt, "seq_s"), val(crt, "par_s")), s >= 1.9))
    crt_failed(b, "crt")
    return b


# W4: 100,000 tiny jobs through a pool of 2 threads


W4_METRICS = [("time_s", "time (s)", "%.4f"), ("us_per_job", "µs/job", "%.3f")]
W4_RATIOS = [("time_s", "crt ahead by", False)]


def bench_w4(tools, args, log):
    n = "10000" if args.quick else "100000"
    nice = "{:,}".format(int(n))
    maps, runs = [], []
    if tools.crt:
        maps.append(Impl("crt", "crt pool:map (size 2, default chunks)",
                         [tools.crt, os.path.join(W4, "crt_map.lua"), n]))
        runs.append(Impl("crt", "crt pool:run, each awaited by its own task",
                         [tools.crt, os.path.join(W4, "crt_run.lua"), n]))
    if tools.python:
        maps.append(Impl("ppe", "Python ProcessPoolExecutor(2).map, chunksize=1000",
                         [tools.python, os.path.join(W4, "py_processes.py"), n]))
        runs.append(Impl("tpe", "Python ThreadPoolExecutor(2), a future per job",
                         [tools.python, os.path.join(W4, "py_threads.py"), n]))
    if tools.lua and tools.has_luv:
        runs.append(Impl("luv", "luv new_work, a queue_work per job (UV_THREADPOOL_SIZE=2)",
                         [tools.lua, os.path.join(W4, "lua_luv.lua"), n], env={"UV_THREADPOOL_SIZE": "2"}))
    if tools.node:
        runs.append(Impl("node", "Node.js 2 worker_threads, a promise per job",
                         [tools.node, os.path.join(W4, "node.js"), n]))
    log("W4: %s tiny jobs through 2 threads: one map" % nice)
    a = result_bench("W4map", "W4 (one map): %s tiny jobs (x * 2) through a pool of 2, as one map" % nice,
                     maps, args, log, W4_METRICS, W4_RATIOS, "crt",
                     notes=["time is measured by each program around the map (pool start excluded for crt; "
                            "the executor's start and shutdown included for Python)."])
    add_targets(a, ahead("crt map ahead of ProcessPoolExecutor.map (chunksize=1000)",
                         find(a["rows"], "crt"), find(a["rows"], "ppe"), "time_s", "s", False, fmt="%.4f"))
    crt_failed(a, "crt")
    log("W4: %s tiny jobs through 2 threads: separate runs" % nice)
    b = result_bench("W4run", "W4 (separate runs): %s tiny jobs (x * 2) through a pool of 2, each submitted "
                     "and awaited on its own" % nice, runs, args, log, W4_METRICS, W4_RATIOS, "crt")
    crt = find(b["rows"], "crt")
    add_targets(b, ahead("crt runs ahead of luv new_work", crt, find(b["rows"], "luv"), "time_s", "s", False,
                         fmt="%.4f"),
                ahead("crt runs >= 10x ahead of ThreadPoolExecutor", crt, find(b["rows"], "tpe"), "time_s", "s",
                      False, 10, fmt="%.4f"),
                ahead("crt runs >= 10x ahead of Node.js worker_threads", crt, find(b["rows"], "node"), "time_s",
                      "s", False, 10, fmt="%.4f"))
    crt_failed(b, "crt")
    return [a, b]


# W5: a worker thread sends 1,000,000 small tables to the main task


def bench_w5(tools, args, log):
    n = "100000" if args.quick else "1000000"
    nice = "{:,}".format(int(n))
    impls = []
    if tools.crt:
        impls.append(Impl("crt", "crt.thread.spawn + crt.channel(4096)",
                          [tools.crt, os.path.join(W5, "crt.lua"), n, "4096"]))
    if tools.lua and tools.has_luv:
        impls.append(Impl("luv", "luv uv.new_thread, lines through a pipe",
                          [tools.lua, os.path.join(W5, "lua_luv.lua"), n]))
    if tools.node:
        impls.append(Impl("node", "Node.js worker_threads postMessage",
                          [tools.node, os.path.join(W5, "node.js"), n]))
    if tools.crt:
        impls.append(Impl("crt_inf", "crt.thread.spawn + crt.channel() (unbounded)",
                          [tools.crt, os.path.join(W5, "crt.lua"), n, "inf"]))
    log("W5: %s small tables from a worker thread to the main task" % nice)
    b = result_bench("W5", "W5: a worker thread sends %s tables {i = i, s = \"hello\"} to the main task" % nice,
                     impls, args, log,
                     [("time_s", "time (s)", "%.3f"), ("us_per_msg", "µs/msg", "%.3f")],
                     [("time_s", "crt ahead by", False)], "crt",
                     notes=["luv has no channel between threads: its thread writes each table as a line "
                            "\"i,s\\n\" into a pipe (64 KiB writes) and the loop parses the lines back into tables."])
    crt = find(b["rows"], "crt")
    add_targets(b, ahead("crt >= 2.5x ahead of luv (pipe)", crt, find(b["rows"], "luv"), "us_per_msg",
                         "µs/msg", False, 2.5),
                ahead("crt >= 2.5x ahead of Node.js postMessage", crt, find(b["rows"], "node"), "us_per_msg",
                      "µs/msg", False, 2.5))
    u = val(crt, "us_per_msg")
    if u is not None:
        add_targets(b, target("crt well under 1 µs per message", "%.3f µs per message" % u, u < 1.0))
    crt_failed(b, "crt")
    return b


# W6: start 200 children that each send one message back and exit


def build_floor(log):
    """Compile bench/w6_spawn/floor.c into a temporary directory."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler (cc)"
    tmp = tempfile.mkdtemp(prefix="crt-bench-")
    exe = os.path.join(tmp, "floor")
    p = subprocess.run([cc, "-O2", "-o", exe, os.path.join(W6, "floor.c")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        return None, p.stdout.decode(errors="replace")[-300:]
    CLEANUP.append(tmp)
    log("  built %s" % exe)
    return exe, None


CLEANUP = []


def bench_w6(tools, args, log):
    n = "50" if args.quick else "200"
    nnode = "10" if args.quick else "50"
    impls = []
    if tools.crt:
        impls.append(Impl("crt", "crt.process.spawn", [tools.crt, os.path.join(W6, "crt.lua"), n], prefix="crt_"))
    floor, why = (None, None)
    if tools.lua:
        floor, why = build_floor(log)
        if floor:
            impls.append(Impl("floor", "floor: posix_spawn of lua5.4 + a pipe (floor.c)",
                              [floor, n, tools.lua], prefix="floor_"))
    if tools.python:
        impls.append(Impl("py", "Python multiprocessing (fork) + Pipe",
                          [tools.python, os.path.join(W6, "py_mp.py"), n], prefix="py_"))
    if tools.node:
        impls.append(Impl("node", "Node.js child_process.fork + IPC (%s children)" % nnode,
                          [tools.node, os.path.join(W6, "node.js"), nnode], prefix="node_"))
    log("W6: %s children each sending one message back" % n)
    b = result_bench("W6", "W6: start %s children that each send one message back and exit, all at once "
                     "(burst) and one after another (serial)" % n, impls, args, log,
                     [("burst_per_s", "burst (children/s)", "%.0f"),
                      ("serial_per_s", "serial (children/s)", "%.0f")],
                     [("burst_per_s", "crt ahead by (burst)", True),
                      ("serial_per_s", "crt ahead by (serial)", True)], "crt",
                     notes=["Node starts a whole runtime per child (~50 ms): it runs %s children, not %s." % (
                         nnode, n)] + (["floor not built: %s" % why] if why else []))
    crt, fl, py = find(b["rows"], "crt"), find(b["rows"], "floor"), find(b["rows"], "py")
    for mode in ("burst", "serial"):
        name = mode + "_per_s"
        add_targets(b, ahead("crt ahead of Python multiprocessing (%s)" % mode, crt, py, name,
                             "children/s", True, fmt="%.0f"))
        a, f = val(crt, name), val(fl, name)
        if a is not None and f is not None:
            add_targets(b, target("crt within 1.5x of the floor (%s)" % mode,
                                  "floor %s/s vs crt %s/s: the floor is %.2fx crt's rate" % (
                                      group("%.0f" % f), group("%.0f" % a), f / a), f / a <= 1.5))
    crt_failed(b, "crt")
    return b


# idle: crt_step with no task alive and a large heap (issue 14)


def bench_idle(tools, args, log):
    tables = "20000" if args.quick else "200000"
    steps = "200" if args.quick else "2000"
    impls = []
    host = os.path.join(os.path.dirname(tools.crt), "bench_idle_step") if tools.crt else None
    if host and os.path.exists(host):
        impls.append(Impl("crt", "crt_step(rt, CRT_NOWAIT) from a C host (bench/idle_step/host.c)",
                          [host, tables, steps]))
    log("idle: idle crt_step calls with %s tables on the heap" % tables)
    b = result_bench("idle", "idle: one crt_step(rt, CRT_NOWAIT) of an embedding host with nothing to do, "
                     "with %s small tables on the Lua heap" % "{:,}".format(int(tables)), impls, args, log,
                     [("empty_ns", "empty runtime (ns/step)", "%.0f"),
                      ("heap_ns", "large heap (ns/step)", "%.0f"),
                      ("heap_task_ns", "heap + 1 sleeping task (ns/step)", "%.0f"),
                      ("heap_after_ns", "heap, after a burst (ns/step)", "%.0f"),
                      ("floor_ns", "floor: uv_run NOWAIT (ns/step)", "%.0f")],
                     [], "crt",
                     notes=["The floor is uv_run(UV_RUN_NOWAIT) on an empty libuv loop, measured by the same "
                            "program. Before the fix every idle step ran a full garbage collection."])
    crt = find(b["rows"], "crt")
    e, h, ht, ha = (val(crt, k) for k in ("empty_ns", "heap_ns", "heap_task_ns", "heap_after_ns"))
    if h is not None and ht is not None:
        add_targets(b, target("an idle step costs no more than a step with a task alive",
                              "%.0f ns idle vs %.0f ns with a sleeping task" % (h, ht), h <= ht))
    if h is not None and e is not None and ha is not None:
        add_targets(b, target("an idle step does not grow with the heap (within 3x of an empty runtime)",
                              "%.0f / %.0f ns with the heap vs %.0f ns empty" % (h, ha, e),
                              max(h, ha) <= 3 * max(e, 1)))
    crt_failed(b, "crt")
    return b


# Messages between a process and its child


def bench_msgs(tools, args, log):
    sizes = ["50000", "2000", "32"] if args.quick else ["500000", "20000", "512"]
    impls = []
    m = {"small_per_s": "small_per_s", "roundtrip_per_s": "roundtrip_per_s", "mib_per_s": "mib_per_s"}
    if tools.crt:
        impls.append(Impl("crt", "crt.process.spawn, child:send / crt.parent:recv",
                          [tools.crt, os.path.join(MSGS, "crt.lua")] + sizes, prefix="crt_"))
    if tools.python:
        impls.append(Impl("py", "Python multiprocessing (fork)", [tools.python, os.path.join(MSGS, "py_mp.py")] + sizes,
                          prefix="py_", views=[
                              ("pypipe", "Python multiprocessing Pipe",
                               {k: "pipe_" + k for k in m}),
                              ("pyqueue", "Python multiprocessing Queue",
                               {"small_per_s": "queue_small_per_s", "mib_per_s": "queue_mib_per_s"})]))
    if tools.node:
        impls.append(Impl("node", "Node.js child_process.fork IPC", [tools.node, os.path.join(MSGS, "node.js")] + sizes,
                          prefix="node_"))
    log("Messages between processes: %s small, %s round trips, %s x 1 MiB" % tuple(sizes))
    b = result_bench("msgs", "Messages between a process and its child: %s small messages one way, "
                     "%s round trips, %s messages of 1 MiB" % tuple("{:,}".format(int(x)) for x in sizes),
                     impls, args, log,
                     [("small_per_s", "small msgs/s", "%.0f"), ("roundtrip_per_s", "round trips/s", "%.0f"),
                      ("mib_per_s", "1 MiB msgs: MiB/s", "%.0f")],
                     [("small_per_s", "crt ahead by (small)", True),
                      ("mib_per_s", "crt ahead by (1 MiB)", True)], "crt",
                     notes=["Each rate is measured by the program (children are started before its clock). "
                            "Python's Pipe and Queue rows come from the same run.",
                            "Round trips are reported but not ranked: the rate is bimodal for every "
                            "implementation on this machine (~15,000/s or ~100,000+/s from one run to the next; "
                            "the wake-up of the other process on the other core dominates), see docs/benchmarks.md."])
    crt = find(b["rows"], "crt")
    for peer in ("pypipe", "pyqueue", "node"):
        add_targets(b, ahead("crt small messages ahead of %s", crt, find(b["rows"], peer), "small_per_s",
                             "msgs/s", True, fmt="%.0f"))
    for peer in ("pypipe", "pyqueue", "node"):
        add_targets(b, ahead("crt 1 MiB messages ahead of %s", crt, find(b["rows"], peer), "mib_per_s",
                             "MiB/s", True, fmt="%.0f"))
    crt_failed(b, "crt")
    return b


# W7: TCP echo on loopback


def bench_w7(tools, args, log):
    clients, rounds = ("20", "200") if args.quick else ("100", "1000")
    mib = "128" if args.quick else "1024"
    progs = []
    if tools.crt:
        progs.append(("crt", "crt.net (tasks)", [tools.crt, os.path.join(W7, "crt.lua")]))
    if tools.lua and tools.has_luv:
        progs.append(("luv", "luv (lua5.4 coroutines resumed from callbacks)",
                      [tools.lua, os.path.join(W7, "lua_luv.lua")]))
    if tools.node:
        progs.append(("node", "Node.js net (async/await)", [tools.node, os.path.join(W7, "node.js")]))
    if tools.python:
        progs.append(("asyncio", "Python asyncio streams", [tools.python, os.path.join(W7, "py_asyncio.py")]))
    log("W7 (round trips): %s clients x %s round trips of 64 bytes" % (clients, rounds))
    a = result_bench("W7rtt", "W7 (round trips): an echo server and %s clients x %s round trips of 64 bytes, "
                     "one process, 127.0.0.1" % (clients, "{:,}".format(int(rounds))),
                     [Impl(k, l, argv + ["rtt", clients, rounds]) for k, l, argv in progs], args, log,
                     [("rtt_per_sec", "round trips/s", "%.0f")], [("rtt_per_sec", "crt ahead by", True)], "crt")
    crt = find(a["rows"], "crt")
    add_targets(a, ahead("crt at least as many round trips/s as luv", crt, find(a["rows"], "luv"), "rtt_per_sec",
                         "round trips/s", True, 1.0, fmt="%.0f"),
                ahead("crt >= 1.3x Node.js's round trips/s", crt, find(a["rows"], "node"), "rtt_per_sec",
                      "round trips/s", True, 1.3, fmt="%.0f"))
    crt_failed(a, "crt")
    log("W7 (bulk): %s MiB through one stream" % mib)
    b = result_bench("W7bulk", "W7 (bulk): one stream pushes %s MiB (1 MiB writes) through 127.0.0.1 to a "
                     "counting server" % "{:,}".format(int(mib)),
                     [Impl(k, l, argv + ["bulk", mib]) for k, l, argv in progs], args, log,
                     [("mib_per_sec", "MiB/s", "%.0f")], [("mib_per_sec", "crt ahead by", True)], "crt",
                     notes=["No target was set for the bulk stream: reported for context."])
    crt_failed(b, "crt")
    return [a, b]


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

    if bench.get("kind") == "result":
        return result_columns(bench, ref)
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


def result_columns(bench, ref):
    """The table of a benchmark of standalone programs: its values, then the
    process's wall time and peak RSS, then 'crt ahead by' columns: how many
    times crt is better than this row (its time / crt's, or crt's rate / its)."""
    titles = ["implementation"] + [m[1] for m in bench["metrics"]] + \
        ["process wall (s)", "peak RSS (MiB)"] + [r[1] for r in bench["ratios"]]

    def cells(r):
        out = [r["label"]]
        for name, _, fmt in bench["metrics"]:
            v = r["m"].get(name)
            out.append(group(fmt % v) if v is not None else "-")
        out += ["%.2f" % r["wall"], "%.1f" % (r["rss_kib"] / 1024)]
        for name, _, higher in bench["ratios"]:
            a, b = val(ref, name), r["m"].get(name)
            if a is None or b is None or not a or not b:
                out.append("-")
            else:
                out.append("%.2f" % (a / b if higher else b / a))
        return out
    return titles, cells


def group(num):
    """'1234567' -> '1,234,567' (integers only)."""
    if re.fullmatch(r"-?\d{4,}", num):
        return "{:,}".format(int(num))
    return num


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
    lines.append("(median of %d runs; time vs crt = implementation's wall time / crt's; "
                 "crt ahead by = its time / crt's, or crt's rate / its: above 1, crt is ahead)" % info["runs"])
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
        if b.get("method") or b.get("load"):
            lines.append("  (%s)" % "; ".join(x for x in (b.get("method"), b.get("load")) if x))
        for n in b.get("notes", []):
            lines.append("  note: " + n)
        for t in b["targets"]:
            lines.append("  %-4s %s: %s" % ("PASS" if t["pass"] else "MISS", t["what"], t["detail"]))
    return "\n".join(lines) + "\n"


def md_cell(s):
    return str(s).replace("|", "\\|")


def markdown_report(benches, info):
    out = []
    out.append("Measured on %s with `scripts/bench` (median of %d runs per implementation, "
               "implementations interleaved). *time vs crt*: the implementation's time / crt's; "
               "*crt ahead by*: its time / crt's, or crt's rate / its rate (above 1: crt is ahead)."
               % (info["date"], info["runs"]))
    out.append("")
    out.append("| machine | |")
    out.append("|---|---|")
    for k in ("cpu", "cores", "memory", "kernel", "os", "crt", "commit", "lua", "luv", "libuv",
              "node", "python", "compiler", "hyperfine", "memory measure", "load", "duration"):
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
        out.append("")
        if b.get("method") or b.get("load"):
            out.append("(%s)" % "; ".join(x for x in (b.get("method"), b.get("load")) if x))
            out.append("")
        for n in b.get("notes", []):
            out.append("- " + n)
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


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def dpkg_version(pkg):
    return capture(["dpkg-query", "-W", "-f", "${Version}", pkg]).strip()


# --------------------------------------------------------------------------


BENCHES = {"w1": bench_w1, "w2": bench_w2, "startup": bench_startup, "w3": bench_w3,
           "w3p": bench_w3p, "w4": bench_w4, "w5": bench_w5, "w6": bench_w6, "msgs": bench_msgs,
           "w7": bench_w7, "idle": bench_idle}
ALIASES = {"w3t": "w3", "w3_cpu": "w3", "threads": "w3", "w3_proc": "w3p", "w3proc": "w3p",
           "w4_tiny": "w4", "w5_messages": "w5", "w6_spawn": "w6", "proc_msgs": "msgs",
           "procmsgs": "msgs", "messages": "msgs", "w7_echo": "w7", "start-up": "startup",
           "idle_step": "idle"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("benchmarks", nargs="*", help="%s (default: all)" % " ".join(BENCHES))
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

    names = [ALIASES.get(b.lower(), b.lower()) for b in args.benchmarks] or list(BENCHES)
    for b in names:
        if b not in BENCHES:
            ap.error("unknown benchmark %r (known: %s)" % (b, ", ".join(BENCHES)))
    names = [b for b in BENCHES if b in names]  # the usual order, once each

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
    benches = []
    started = time.time()
    try:
        for name in names:
            load = loadavg()
            t0 = time.time()
            got = BENCHES[name](tools, args, log)
            parts = got if isinstance(got, list) else [got]
            for b in parts:
                b["load"] = "load average %s before, %s after; %.0f s%s" % (
                    load, loadavg(), time.time() - t0,
                    " for the %d parts of %s" % (len(parts), name.upper()) if len(parts) > 1 else "")
                benches.append(b)
    finally:
        for d in CLEANUP:
            shutil.rmtree(d, ignore_errors=True)
    info["duration"] = "%.1f min for the whole run" % ((time.time() - started) / 60)

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
