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
