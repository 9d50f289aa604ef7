"""W3 for Python processes: 8 CPU-bound jobs sequentially, then on a
ProcessPoolExecutor with one process per core. Usage: py_processes.py [jobs [iterations]]"""
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
ITER = int(sys.argv[2]) if len(sys.argv) > 2 else 11_000_000


def work(n):
    x = 0
    for i in range(1, n + 1):
        x = (x + i * i) % 1000003
    return x


if __name__ == "__main__":
    t0 = time.perf_counter()
    seq = [work(ITER) for _ in range(JOBS)]
    t_seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as ex:
        par = list(ex.map(work, [ITER] * JOBS))
    t_par = time.perf_counter() - t0
    if seq != par:
        sys.exit("w3 py_processes: wrong result")
    print("RESULT speedup=%.2f seq_s=%.3f par_s=%.3f job_s=%.3f" % (t_seq / t_par, t_seq, t_par, t_seq / JOBS))
