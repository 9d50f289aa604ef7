"""W4 for Python: 100,000 tiny jobs (x * 2) through ProcessPoolExecutor(2).map
with chunksize=1000. Usage: py_processes.py [N]"""
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def double(x):
    return x * 2


if __name__ == "__main__":
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as ex:
        s = sum(ex.map(double, range(1, N + 1), chunksize=1000))
    t = time.perf_counter() - t0
    if s != N * (N + 1):
        sys.exit("w4 py_processes: wrong sum")
    print("RESULT time_s=%.4f jobs_per_s=%.0f us_per_job=%.3f" % (t, N / t, t / N * 1e6))
