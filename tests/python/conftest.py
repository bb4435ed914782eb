"""Shared fixtures for the reference tests: where the optforge binary is, a helper to run it, the
check every refusal must pass, and a file hash (the reference for "inputs never modified")."""
import hashlib
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


def run_optforge(*args, input=None, check=True, timeout=600, text=True, errors=None):
    """Runs optforge; returns the CompletedProcess. text=True: stdout/stderr are str, decoded as
    UTF-8 with `errors` (None: strict; "replace" where the output may hold any bytes, e.g. a
    broken file's name); text=False: bytes in and out, nothing decoded or repaired."""
    proc = subprocess.run([optforge_path(), *map(str, args)], input=input, capture_output=True,
                          text=text, errors=errors if text else None, timeout=timeout)
    if check and proc.returncode != 0:
        stderr = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise AssertionError(f"optforge {' '.join(map(str, args))} failed ({proc.returncode}):\n{stderr}")
    return proc


def assert_clean_error(proc, *must_mention):
    """A refusal as users must see it: exit 1 (not a signal), one line `optforge: error: ...`
    on stderr, naming each of `must_mention`. Returns that line (without the newline)."""
    stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
    assert proc.returncode == 1, f"exit {proc.returncode} (negative = killed by a signal)\n{stderr}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optforge: error: "), stderr
    for m in must_mention:
        assert str(m) in lines[0], (m, lines[0])
    return lines[0]


# CLI11's exit status for a value its check refused (CLI::ExitCodes::ValidationError).
CLI11_VALIDATION_ERROR = 105


def assert_usage_error(proc, option):
    """A command-line value refused by the argument parser (CLI11) before anything runs: exit
    status CLI11_VALIDATION_ERROR (CLI11's own codes, 100-127, are kept apart from optforge's 1 for
    a bad input), and exactly CLI11's two lines: `OPTION: <why>` and its pointer to --help.
    Returns the first line."""
    assert proc.returncode == CLI11_VALIDATION_ERROR, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{option}: "), proc.stderr
    assert lines[1] == "Run with --help for more information.", proc.stderr
    return lines[0]


def sha256_file(path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks: checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
