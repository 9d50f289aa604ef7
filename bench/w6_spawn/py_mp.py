"""W6 for Python: multiprocessing with the fork start method. N children
each send one message back through a Pipe and exit; all at once, then one
after another. A child is done when its message came and join() returned.
Prints one line: RESULT py_burst_per_s=... py_serial_per_s=... n=N
Usage: python3 py_mp.py [N]"""
import multiprocessing as mp
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def child(conn):
    conn.send("x")
    conn.close()


def start(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(w,))
    p.start()
    w.close()
    return p, r


def finish(p, r):
    if r.recv() != "x":
        sys.exit("w6 py: bad message")
    p.join()
    if p.exitcode != 0:
        sys.exit("w6 py: child failed")


def main():
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    kids = [start(ctx) for _ in range(N)]
    for p, r in kids:
        finish(p, r)
    burst = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(N):
        finish(*start(ctx))
    serial = time.perf_counter() - t0
    print("RESULT py_burst_per_s=%.1f py_serial_per_s=%.1f n=%d" % (N / burst, N / serial, N))


if __name__ == "__main__":
    main()
