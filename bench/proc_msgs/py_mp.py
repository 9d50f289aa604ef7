"""Message throughput for Python multiprocessing (fork), through a Pipe and
through a Queue: the same three measures as crt.lua (small messages
streamed, round trips, 1 MiB messages).
Prints one line: RESULT py_pipe_small_per_s=... py_pipe_roundtrip_per_s=...
py_pipe_mib_per_s=... py_queue_small_per_s=... py_queue_mib_per_s=...
Usage: python3 py_mp.py [N] [M] [B]"""
import multiprocessing as mp
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 500000
M = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
B = int(sys.argv[3]) if len(sys.argv) > 3 else 512


def pipe_counter(conn):
    n = size = 0
    while True:
        v = conn.recv()
        if v is None:
            break
        n += 1
        if isinstance(v, bytes):
            size += len(v)
    conn.send((n, size))


def pipe_echo(conn):
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(v)


def queue_counter(q, out):
    n = size = 0
    while True:
        v = q.get()
        if v is None:
            break
        n += 1
        if isinstance(v, bytes):
            size += len(v)
    out.put((n, size))


def with_pipe(target, fn):
    a, b = mp.Pipe()
    p = mp.Process(target=target, args=(b,))
    p.start()
    r = fn(a)
    p.join()
    return r


def main():
    mp.set_start_method("fork")

    def small(conn):
        t0 = time.perf_counter()
        for i in range(1, N + 1):
            conn.send(i)
        conn.send(None)
        assert conn.recv()[0] == N
        return N / (time.perf_counter() - t0)

    def rtt(conn):
        conn.send(0)
        conn.recv()
        t0 = time.perf_counter()
        for i in range(1, M + 1):
            conn.send(i)
            assert conn.recv() == i
        r = M / (time.perf_counter() - t0)
        conn.send(None)
        return r

    mib = b"x" * (1024 * 1024)

    def big(conn):
        t0 = time.perf_counter()
        for _ in range(B):
            conn.send(mib)
        conn.send(None)
        n, size = conn.recv()
        assert n == B and size == B * len(mib)
        return B / (time.perf_counter() - t0)

    ps = with_pipe(pipe_counter, small)
    pr = with_pipe(pipe_echo, rtt)
    pb = with_pipe(pipe_counter, big)

    def with_queue(items):
        q, out = mp.Queue(), mp.Queue()
        p = mp.Process(target=queue_counter, args=(q, out))
        p.start()
        t0 = time.perf_counter()
        count = 0
        for v in items():
            q.put(v)
            count += 1
        q.put(None)
        n, _ = out.get()
        assert n == count
        dt = time.perf_counter() - t0
        p.join()
        return count / dt

    qs = with_queue(lambda: range(1, N + 1))
    qb = with_queue(lambda: (mib for _ in range(B)))
    print("RESULT py_pipe_small_per_s=%.0f py_pipe_roundtrip_per_s=%.0f py_pipe_mib_per_s=%.1f "
          "py_queue_small_per_s=%.0f py_queue_mib_per_s=%.1f" % (ps, pr, pb, qs, qb))


if __name__ == "__main__":
    main()
