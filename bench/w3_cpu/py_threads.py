"""W3 for Python threading: 8 CPU-bound jobs sequentially, then one thread
per job (threading.Thread). The GIL serialises them. Usage: py_threads.py [jobs [iterations]]"""
import sys
import threading
import time

JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
ITER = int(sys.argv[2]) if len(sys.argv) > 2 else 11_000_000


def work(n):
    x = 0
    for i in range(1, n + 1):
        x = (x + i * i) % 1000003
    return x


t0 = time.perf_counter()
seq = [work(ITER) for _ in range(JOBS)]
t_seq = time.perf_counter() - t0

par = [None] * JOBS


def run(k):
    par[k] = work(ITER)


t0 = time.perf_counter()
threads = [threading.Thread(target=run, args=(k,)) for k in range(JOBS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
t_par = time.perf_counter() - t0
if seq != par:
    sys.exit("w3 py_threads: wrong result")
print("RESULT speedup=%.2f seq_s=%.3f par_s=%.3f job_s=%.3f" % (t_seq / t_par, t_seq, t_par, t_seq / JOBS))
