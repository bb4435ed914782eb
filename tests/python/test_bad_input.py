"""Bad input: every broken file is one clear error line and a non-zero exit, never a crash,
never a side effect (inputs unchanged, no output left behind, nothing executed)."""
import io
import os
import pickle
import random
import struct
import zipfile
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file as st_save

from conftest import assert_clean_error, run_optforge, sha256_file


def run(*args):
    """optforge on a broken file: stderr may quote its bytes, so undecodable ones are replaced."""
    return run_optforge(*args, check=False, errors="replace", timeout=120)


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    sd = OrderedDict(a=torch.randn(7, 5), b=torch.arange(10, dtype=torch.int64), c=torch.randn(3).half())
    sd["view"] = sd["a"][1:, ::2]
    files = {}
    for name, legacy in (("zip", False), ("legacy", True)):
        p = d / f"{name}.pt"
        torch.save({"model": sd, "cfg": {"x": 1}}, p, _use_new_zipfile_serialization=not legacy)
        files[name] = p
    p = d / "st.safetensors"
    st_save({k: v.contiguous() for k, v in sd.items()}, str(p))
    files["safetensors"] = p
    return files


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_truncated_at_many_offsets(tmp_path, good_files, kind):
    data = open(good_files[kind], "rb").read()
    cuts = sorted(set(list(range(0, 80)) + list(range(0, len(data), max(1, len(data) // 60))) + [len(data) - 1]))
    for n in cuts:
        p = tmp_path / f"cut{n}{good_files[kind].suffix}"
        p.write_bytes(data[:n])
        proc = run("inspect", "--checksum", p)
        assert_clean_error(proc, p)
        out = tmp_path / "out.pt"
        assert_clean_error(run("convert", p, out), p)
        assert not out.exists()


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
def test_flipped_bytes_never_crash(tmp_path, good_files, kind):
    data = bytearray(open(good_files[kind], "rb").read())
    rng = random.Random(kind)
    for i in range(150):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
        p = tmp_path / f"flip{i}{good_files[kind].suffix}"
        p.write_bytes(bytes(b))
        proc = run("inspect", "--checksum", p)
        # A flip in tensor data of a legacy file is undetectable (no checksum); anything else may
        # be caught. Either way: exit 0 or one clean error line, never a signal.
        if proc.returncode != 0:
            assert_clean_error(proc, p)


def test_wrong_crc_is_reported_and_nothing_written(tmp_path, good_files):
    data = bytearray(open(good_files["zip"], "rb").read())
    z = zipfile.ZipFile(io.BytesIO(bytes(data)))
    rec = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack("<HH", data[rec.header_offset + 26:rec.header_offset + 30])
    start = rec.header_offset + 30 + name_len + extra_len  # the local header's extra (padding)
    data[start + 3] ^= 0x40
    p = tmp_path / "badcrc.pt"
    p.write_bytes(bytes(data))
    before = sha256_file(p)
    assert_clean_error(run("inspect", "--checksum", p), p, "CRC")
    for out in (tmp_path / "o.pt", tmp_path / "o.safetensors"):
        assert_clean_error(run("convert", p, out), p, "CRC")
        assert not out.exists()
    assert sha256_file(p) == before
    assert sorted(os.listdir(tmp_path)) == ["badcrc.pt"]  # no temporary left either


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("fn,name", [(os.system, "posix.system"), (eval, "builtins.eval")])
def test_code_in_pickle_is_refused_and_never_run(tmp_path, fn, name):
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if fn is os.system else f"open({str(marker)!r}, 'w')"
    p = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(2)}, "payload": Evil(fn, arg)}, p)
    proc = run("inspect", p)
    assert_clean_error(proc, name, p, "offset")
    assert_clean_error(run("convert", p, tmp_path / "o.pt"), name)
    assert not marker.exists()
    assert not (tmp_path / "o.pt").exists()


def write_handmade_pt(path, size, stride, offset, numel):
    """A zip .pt whose single tensor has the given geometry over a storage of `numel` floats."""

    class FakeStorage:
        pass

    storage = FakeStorage()

    class T:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, False, OrderedDict()))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is storage else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"t": T()})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/data/0", bytes(4 * numel))
        z.writestr("archive/version", "3\n")


def test_handmade_file_is_valid_when_in_bounds(tmp_path):
    p = tmp_path / "ok.pt"
    write_handmade_pt(p, (2, 2), (2, 1), 0, 4)
    assert torch.load(p, weights_only=True)["t"].shape == (2, 2)  # the reference agrees it is valid
    assert run("inspect", p).returncode == 0


@pytest.mark.parametrize("size,stride,offset", [((10,), (1,), 0), ((2, 2), (2, 1), 1), ((3,), (2,), 0)])
def test_tensor_past_its_storage(tmp_path, size, stride, offset):
    p = tmp_path / "oob.pt"
    write_handmade_pt(p, size, stride, offset, 4)
    with pytest.raises(Exception):
        torch.load(p, weights_only=True)[  # the reference refuses it too (or gives a bad view)
            "t"].contiguous()
    assert_clean_error(run("inspect", "--checksum", p), p, "storage")


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "text.pt"
    p.write_text("hello, I am not a checkpoint\n")
    assert_clean_error(run("inspect", p), p, "not a PyTorch file")
    assert_clean_error(run("convert", p, tmp_path / "x.unknown"), "output format")
