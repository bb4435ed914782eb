"""Runs a command several times and prints its best wall time and peak RSS (the child's maxrss).

usage: measure.py LABEL BYTES REPEATS -- CMD...
Prints one row: label, best seconds, GB/s over BYTES, peak RSS.
"""
import os
import subprocess
import sys
import time


def main():
    label, nbytes, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    best, rss = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        _, status, ru = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{label}: command failed: {' '.join(cmd)}")
        best = min(best, dt)
        rss = max(rss, ru.ru_maxrss * 1024)
    gbps = nbytes / best / 1e9 if nbytes else 0
    print(f"{label:<44} {best:8.3f} s {gbps:8.2f} GB/s {rss / 2**20:10.1f} MiB")


if __name__ == "__main__":
    main()
