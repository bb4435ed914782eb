#!/usr/bin/env python3
"""Stress version of tests/python/test_hard_kill.py: SIGKILL at N random moments (default 100) per
command, for consolidate, reshard, convert --to hf, convert --to metaseq --mp 2 and a file-to-file
convert, then `optforge serve` killed under load and restarted on the same port M times. Prints one
line of figures per command and exits 1 if any check failed.

    OPTFORGE_BIN=build/optforge .venv/bin/python tests/stress/hard_kill.py [--points 100] [--serve-cycles 10]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import test_hard_kill as t  # noqa: E402  (the cases, their reference checks and the serve helpers)
from conftest import run_optforge  # noqa: E402
from hard_kill_util import exercise  # noqa: E402


def serve_cycles(root, cycles):
    """Kill under load and restart on the same port `cycles` times; answers must stay the same."""
    model = root / "tiny.pt"
    run_optforge("demo-model", "-o", model, "--shape", "125m", "--layers", 2, "--embed-dim", 256, "--heads", 4)
    prompts = [f"Request number {i} says" for i in range(8)]
    proc, port = t._start(model, 0)
    expected = [t._complete(port, p) for p in prompts]
    problems = 0
    for _ in range(cycles):
        import concurrent.futures
        pool = concurrent.futures.ThreadPoolExecutor(16)
        for i in range(16):
            pool.submit(t._complete, port, prompts[i % 8], 400)
        time.sleep(0.3)
        proc.kill()
        proc.wait()
        pool.shutdown(wait=True)
        proc, port2 = t._start(model, port)
        with concurrent.futures.ThreadPoolExecutor(8) as p:
            got = list(p.map(lambda s: t._complete(port, s), prompts))
        problems += port2 != port or got != expected
    proc.terminate()
    proc.wait()
    print(f"serve: {cycles} SIGKILLs under load, {cycles} restarts on port {port}, "
          f"{cycles * len(prompts)} answers compared, {problems} cycles with a difference", flush=True)
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--serve-cycles", type=int, default=10)
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="optforge-hard-kill-") as tmp:
        root = Path(tmp)
        inputs = root / "inputs"
        inputs.mkdir()
        run_optforge("demo-model", *t.SHAPE, "--mp", 2, "--fsdp", 2, "-o", inputs / "sharded")
        run_optforge("demo-model", *t.SHAPE, "-o", inputs / "single.pt")
        work = root / "work"
        work.mkdir()
        for name, case in t.cases(inputs, work).items():
            t0 = time.monotonic()
            figures = exercise(case, args.points, seed=1)
            t.check_reference(case, inputs)
            print(figures.line(name) + f" ({time.monotonic() - t0:.0f} s)", flush=True)
            for p in figures.problems:
                print("  problem:", p)
            failed |= bool(figures.problems)
        failed |= serve_cycles(root, args.serve_cycles) > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
