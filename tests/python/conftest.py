"""Shared fixtures for the reference tests: where the optforge binary is, and a helper to run it."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def optforge_path() -> str:
    return os.environ.get("OPTFORGE_BIN", str(ROOT / "build" / "optforge"))


@pytest.fixture(scope="session")
def optforge_bin() -> str:
    path = optforge_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"optforge binary not found at {path}: build first or set OPTFORGE_BIN")
    return path


def run_optforge(*args, input=None, check=True, timeout=600):
    """Runs optforge; returns the CompletedProcess (text mode)."""
    proc = subprocess.run([optforge_path(), *map(str, args)], input=input, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"optforge {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stderr}")
    return proc


def assert_clean_error(proc, *must_mention):
    """A refusal as users must see it: exit 1 (not a signal), one line `optforge: error: ...`
    on stderr, naming each of `must_mention`."""
    assert proc.returncode == 1, f"exit {proc.returncode} (negative = killed by a signal)\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optforge: error: "), proc.stderr
    for m in must_mention:
        assert str(m) in lines[0], (m, lines[0])
