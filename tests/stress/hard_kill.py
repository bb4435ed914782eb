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

import test_hard_kill as t  # noqa: E402  (the cases, their reference checks and the serve load)
from hard_kill_util import exercise  # noqa: E402
from serve_util import serve  # noqa: E402


def serve_cycles(root, cycles):
    """Kill under load and restart on the same port `cycles` times; answers must stay the same."""
    model = t.serve_model(root)
    problems = 0
    with serve(model) as server:
        port = server.port
        expected = t.answers(server, t.PROMPTS)
        problems += not t.kill_under_load(server, t.PROMPTS)
    for cycle in range(cycles):
        with serve(model, port=port) as server:
            problems += server.port != port or t.answers(server, t.PROMPTS) != expected
            if cycle + 1 < cycles:
                problems += not t.kill_under_load(server, t.PROMPTS)
    print(f"serve: {cycles} SIGKILLs under load, {cycles} restarts on port {port}, "
          f"{cycles * len(t.PROMPTS)} answers compared, {problems} problems (a different port or answer, or a load "
          f"that had finished before the kill)", flush=True)
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
        t.make_inputs(inputs)
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
