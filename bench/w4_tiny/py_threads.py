"""W4 for Python: 100,000 tiny jobs (x * 2), each submitted separately to a
ThreadPoolExecutor(2) and awaited through its future. Usage: py_threads.py [N]"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def double(x):
    return x * 2


N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
t0 = time.perf_counter()
with ThreadPoolExecutor(max_workers=2) as ex:
    futures = [ex.submit(double, i) for i in range(1, N + 1)]
    s = sum(f.result() for f in futures)
t = time.perf_counter() - t0
if s != N * (N + 1):
    sys.exit("w4 py_threads: wrong sum")
print("RESULT time_s=%.4f jobs_per_s=%.0f us_per_job=%.3f" % (t, N / t, t / N * 1e6))
