"""Killing optforge with SIGKILL at chosen moments and checking what it left: shared by
tests/python/test_hard_kill.py (a few dozen kill points per command) and
tests/stress/hard_kill.py (hundreds).

A case is one command writing one output (a file, a folder, or a set of files). For each kill
point the command is started on the same output (so each run is also "the next run" after the
previous kill), killed after a delay, and the folder is examined:
  - every final output name that exists holds exactly what an uninterrupted run wrote (a folder:
    the same file names with the same bytes; no temporary inside it), or, where an earlier output
    was there before the run (an older file, an empty folder), exactly that;
  - everything else new in the folder is a recognisable temporary, ".NAME.tmp-optforge-PID-N",
    of a process that was killed;
  - inputs are byte-identical to before (checked at the end: nothing writes them).
A last uninterrupted run must remove every leftover (and say so) and write the reference bytes."""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import sha256_file

TEMP_RE = re.compile(r"^\.(?P<final>.+)\.tmp-optforge-(?P<pid>\d+)-\d+$")


def _has_temporary_of(folder, pid):
    """Whether `folder` holds a temporary written by process `pid`."""
    return any((m := TEMP_RE.match(e)) and int(m["pid"]) == pid for e in os.listdir(folder))


def snapshot(path):
    """A file's hash, or a folder's {name: hash} (including hidden names, which must not be there)."""
    p = Path(path)
    if p.is_dir():
        return {c.name: (snapshot(c) if c.is_dir() else sha256_file(c)) for c in sorted(p.iterdir())}
    return sha256_file(p)


def remove(path):
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


@dataclass
class Case:
    name: str
    argv: list            # the full command line
    workdir: Path         # the folder the outputs appear in (nothing else writes there)
    finals: list          # final output names in workdir (files or folders)
    inputs: list          # files or folders that must stay byte-identical
    reference: dict = field(default_factory=dict)  # final name -> snapshot of an uninterrupted run
    duration: float = 0.0


@dataclass
class Figures:
    points: int = 0
    killed: int = 0           # runs that SIGKILL ended (the rest had finished first)
    complete_seen: int = 0    # final outputs found after a kill, each checked byte-identical
    previous_intact: int = 0  # an earlier output (file, or empty folder) found untouched after a kill
    leftovers_seen: int = 0   # temporaries a killed run left, each recognisably named
    leftovers_removed: int = 0  # of those, gone after the final run (removed by later runs)
    reported_by_final_run: int = 0  # removals the final run printed (those still there before it)
    seen: set = field(default_factory=set)
    problems: list = field(default_factory=list)

    def line(self, name):
        return (f"{name}: {self.points} kill points, {self.killed} killed mid-run, {self.complete_seen} complete "
                f"outputs checked, {self.previous_intact} earlier outputs found intact, {self.leftovers_seen} leftover temporaries seen, {self.leftovers_removed} of "
                f"them removed by later runs ({self.reported_by_final_run} by the final one), "
                f"{len(self.problems)} problems")


def run_reference(case, runs=3):
    """Uninterrupted runs: the bytes every later complete output must equal (all runs must agree),
    and a typical duration (the median: the first run reads a cold cache)."""
    durations = []
    for i in range(runs):
        for f in case.finals:
            remove(case.workdir / f)
        t0 = time.monotonic()
        subprocess.run(case.argv, check=True, capture_output=True)
        durations.append(time.monotonic() - t0)
        snap = {f: snapshot(case.workdir / f) for f in case.finals}
        if i == 0:
            case.reference = snap
        elif snap != case.reference:
            raise AssertionError(f"{case.name}: two uninterrupted runs wrote different bytes")
    case.duration = sorted(durations)[runs // 2]
    for f in case.finals:
        remove(case.workdir / f)


OLD_BYTES = b"an earlier, complete output\n"


def _previous_state(case, point):
    """Every third point starts with something already under each final name: a file output an
    older complete file (to be replaced in one rename), a folder output an empty folder. Returns the
    snapshots a kill may leave there besides the reference."""
    if point % 3 != 2:
        return {}
    prev = {}
    for f in case.finals:
        path = case.workdir / f
        if isinstance(case.reference[f], dict):
            path.mkdir()
            prev[f] = {}
        else:
            path.write_bytes(OLD_BYTES)
            prev[f] = hashlib.sha256(OLD_BYTES).hexdigest()
    return prev


def _examine(case, baseline, killed_pids, pid, prev, figures, point):
    for entry in sorted(set(os.listdir(case.workdir)) - baseline):
        path = case.workdir / entry
        if entry in case.finals:
            got = snapshot(path)
            if entry in prev and got == prev[entry]:
                figures.previous_intact += 1
            elif got == case.reference[entry]:
                figures.complete_seen += 1
            else:
                figures.problems.append(f"point {point}: {entry} exists but differs from an uninterrupted run's")
            continue
        m = TEMP_RE.match(entry)
        if not m or m["final"] not in case.finals or int(m["pid"]) not in killed_pids:
            figures.problems.append(f"point {point}: unexpected entry {entry!r}")
            continue
        if int(m["pid"]) == pid:  # older ones were counted at their own point
            figures.leftovers_seen += 1
            figures.seen.add(entry)


def kill_points(case, n, seed, figures):
    """Runs the command n times, SIGKILLing it at spread-out moments: half at 0..1.3x a normal
    run's duration, half between the moment its first temporary appears and the normal end."""
    rng = random.Random(seed)
    baseline = set(os.listdir(case.workdir)) - set(case.finals)
    killed_pids = set()
    for point in range(n):
        prev = _previous_state(case, point)
        proc = subprocess.Popen(case.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed_pids.add(proc.pid)
        if point % 2:
            t0 = time.monotonic()
            while time.monotonic() < t0 + 2 * case.duration + 1 and proc.poll() is None and not _has_temporary_of(
                    case.workdir, proc.pid):
                time.sleep(0.001)
            time.sleep(rng.uniform(0, max(case.duration - (time.monotonic() - t0), 0.005)))
        else:
            time.sleep(rng.uniform(0, 1.3 * case.duration))
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=60)
        figures.points += 1
        figures.killed += rc == -signal.SIGKILL
        if rc not in (0, -signal.SIGKILL):
            figures.problems.append(f"point {point}: exit status {rc}")
        _examine(case, baseline, killed_pids, proc.pid, prev, figures, point)
        for f in case.finals:  # a complete output would make the next run refuse (folders) or just redo it
            remove(case.workdir / f)
    return killed_pids


def final_run(case, figures):
    """The next run on the same output: removes every leftover, reports it, writes the reference."""
    before = [e for e in os.listdir(case.workdir) if TEMP_RE.match(e)]
    p = subprocess.run(case.argv, capture_output=True, text=True)
    if p.returncode != 0:
        figures.problems.append(f"final run failed: {p.stderr}")
        return
    for e in before:
        if f"removed {case.workdir / e}" not in p.stderr:
            figures.problems.append(f"final run did not report removing {e}: {p.stderr}")
    figures.reported_by_final_run += len(before)
    figures.leftovers_removed = len(figures.seen - set(os.listdir(case.workdir)))
    left = [e for e in os.listdir(case.workdir) if TEMP_RE.match(e)]
    if left:
        figures.problems.append(f"temporaries remain after the final run: {left}")
    for f in case.finals:
        if snapshot(case.workdir / f) != case.reference[f]:
            figures.problems.append(f"final run's {f} differs from the reference run's")


def exercise(case, n, seed=0):
    """Reference run, n kill points, final run; inputs hashed before and after. Returns Figures."""
    figures = Figures()
    inputs_before = {str(i): snapshot(i) for i in case.inputs}
    run_reference(case)
    kill_points(case, n, seed, figures)
    final_run(case, figures)
    if {str(i): snapshot(i) for i in case.inputs} != inputs_before:
        figures.problems.append("an input changed")
    return figures


def signal_mid_write(argv, folder, sig, timeout=30):
    """Starts `argv`, waits until a temporary of its own (TEMP_RE, its PID) appears in `folder`,
    sends `sig` and waits for the command to end, which must be by that signal (its handler removes
    the temporaries and re-raises it). Fails if the command ends, or `timeout` seconds pass, with
    no temporary of its own seen (a command writing straight to its final name fails here); skips
    the test only if the command finished (exit 0) between its temporary appearing and the signal.
    Use an input large enough that writing takes a good fraction of a second."""
    proc = subprocess.Popen(list(map(str, argv)))
    try:
        deadline = time.monotonic() + timeout
        while not _has_temporary_of(folder, proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no temporary of process {proc.pid} seen in {folder} "
                                     f"(exit status {proc.poll()}, {timeout} s at most)")
            time.sleep(0.001)
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc == 0:
        pytest.skip("the command finished before the signal arrived")
    assert rc == -sig, f"exit status {rc}, expected {-sig} (killed by signal {sig})"
    return rc
