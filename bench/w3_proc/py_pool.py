"""W3 for Python: 8 CPU-bound jobs of about 0.4 s each, one after another,
then on a concurrent.futures.ProcessPoolExecutor of 2 workers (the time
includes starting the pool). The loop length is calibrated here.
Prints one line: RESULT py_speedup=... py_seq_s=... py_par_s=... job_s=...
Usage: python3 py_pool.py [jobs] [job seconds] [workers]"""
import concurrent.futures as cf
import sys
import time

NJOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
JOB = float(sys.argv[2]) if len(sys.argv) > 2 else 0.4
WORKERS = int(sys.argv[3]) if len(sys.argv) > 3 else 2


def work(n):
    s = 0
    for i in range(1, n + 1):
        s = (s + i * i) % 1000003
    return s


def main():
    n = 10000
    while True:
        t0 = time.perf_counter()
        work(n)
        dt = time.perf_counter() - t0
        if dt > 0.05:
            n = int(n * JOB / dt)
            break
        n *= 4
    jobs = [n + i for i in range(1, NJOBS + 1)]
    t0 = time.perf_counter()
    expect = [work(j) for j in jobs]
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(WORKERS) as ex:
        got = list(ex.map(work, jobs))
    par = time.perf_counter() - t0
    if got != expect:
        sys.exit("w3 py: wrong result")
    print("RESULT py_speedup=%.2f py_seq_s=%.3f py_par_s=%.3f job_s=%.3f"
          % (seq / par, seq, par, seq / NJOBS))


if __name__ == "__main__":
    main()
