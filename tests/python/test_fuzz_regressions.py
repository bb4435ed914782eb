"""The files the fuzzer found (tests/fuzz/regressions/), read by `optforge inspect`: each gets a
clean exit or one clear error, never a crash. Under scripts/test.sh this also runs against the
ASan + UBSan build (OPTFORGE_SANITIZED=1), where any memory error aborts the process."""
import pytest
import torch

from conftest import ROOT, assert_clean_error, run_optforge

REGRESSIONS = ROOT / "tests" / "fuzz" / "regressions"
FILES = sorted(p.name for p in REGRESSIONS.iterdir() if p.is_file())


@pytest.mark.parametrize("name", FILES)
def test_inspect_ends_cleanly(name, optforge_bin):
    proc = run_optforge("inspect", REGRESSIONS / name, check=False, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-4000:]
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, proc.stderr[-4000:]
    assert proc.stderr.count("pickle byte offset") <= 1, proc.stderr


def test_dict_built_from_itself_is_refused_like_torch(optforge_bin):
    # A legacy-format file whose second pickle BUILDs a dict with the same dict as state, twice
    # (once read a vector while appending to it), then underflows its stack at byte 39.
    path = REGRESSIONS / "fuzz_torch_file-build-dict-from-itself"  # found by the torch-file fuzzer
    with pytest.raises(AttributeError):  # Python refuses the first BUILD on a dict outright
        torch.load(path)
    line = assert_clean_error(run_optforge("inspect", path, check=False), path)
    assert line.count("(pickle byte offset 39)") == 1, line
