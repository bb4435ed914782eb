"""The .pt reader and writer against real PyTorch, and safetensors against the safetensors package.

Every file here is written by torch.save (zip and legacy formats) or safetensors; optforge reads it
(inspect --json --checksum) and writes it back (convert); torch.load(weights_only=True) and
safetensors load our outputs, and everything is compared bit for bit.
"""
import collections
import json
import os
import struct
import zlib
from argparse import Namespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file as st_load, save_file as st_save

from conftest import run_optforge

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
              torch.int16, torch.int8, torch.uint8, torch.bool]
OUR_NAME = {torch.float64: "f64", torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
            torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
            torch.bool: "bool", torch.complex64: "c64", torch.complex128: "c128"}


def raw_bytes(t: torch.Tensor) -> bytes:
    """The logical (row-major) bytes of a tensor, whatever its dtype and strides."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.numpy().tobytes()


def random_tensor(dtype, shape, gen):
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000), shape, generator=gen, dtype=torch.int64).to(dtype)


def tensor_cases():
    """A state dict covering every case the issue names."""
    g = torch.Generator().manual_seed(0)
    d = collections.OrderedDict()
    for dt in ALL_DTYPES:
        d[f"dense.{OUR_NAME[dt]}"] = random_tensor(dt, (3, 5), g)
    d["complex64"] = torch.randn(4, dtype=torch.complex64, generator=g)
    d["zero_dim"] = torch.tensor(3.25)
    d["zero_dim_int"] = torch.tensor(-7, dtype=torch.int64)
    d["empty"] = torch.zeros(0, 4)
    d["empty_1d"] = torch.zeros(0, dtype=torch.float16)
    base = torch.randn(6, 8, generator=g)
    d["base"] = base
    d["transposed"] = base.t()                 # strides (1, 8): non-contiguous, shares storage
    d["sliced"] = base[2:5, 1:7]               # storage offset, strided rows
    d["stepped"] = base[:, ::3]                # stride 3 in the last dim
    d["row"] = base[4]                         # offset view
    flat = torch.randn(100, generator=g, dtype=torch.float64).half()
    d["flat"] = flat
    d["flat_view_a"] = flat[:30].view(5, 6)    # as fairscale's unflatten writes: views of one storage
    d["flat_view_b"] = flat[30:90].view(6, 10)
    d["expanded"] = torch.randn(1, 3, generator=g).expand(4, 3)  # stride 0
    return d


def save(obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def inspect_json(path, *extra):
    out = run_optforge("inspect", "--json", "--checksum", *extra, path).stdout
    return json.loads(out)


@pytest.fixture(params=["zip", "legacy"])
def legacy(request):
    return request.param == "legacy"


def test_reads_every_tensor_case(tmp_path, legacy):
    d = tensor_cases()
    path = tmp_path / "cases.pt"
    save(d, path, legacy)
    info = inspect_json(path)
    assert info["format"] == ("torch legacy" if legacy else "torch zip")
    got = {t["name"]: t for t in info["tensors"]}
    assert list(got) == list(d)
    for name, t in d.items():
        g = got[name]
        assert g["dtype"] == OUR_NAME[t.dtype], name
        assert g["shape"] == list(t.shape), name
        assert g["nbytes"] == t.numel() * t.element_size(), name
        assert g["storage_offset"] == t.storage_offset(), name
        assert g["contiguous"] == t.is_contiguous(), name
        assert int(g["crc32"], 16) == zlib.crc32(raw_bytes(t)), name


@pytest.mark.parametrize("out_legacy", [False, True])
def test_round_trip_bit_exact_with_shared_storages(tmp_path, out_legacy):
    d = tensor_cases()
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    save(d, src, out_legacy)
    run_optforge("convert", src, dst)
    back = torch.load(dst, weights_only=True)
    assert isinstance(back, collections.OrderedDict)
    assert list(back) == list(d)
    for name, t in d.items():
        b = back[name]
        assert b.dtype == t.dtype and b.shape == t.shape, name
        assert b.stride() == t.stride() and b.storage_offset() == t.storage_offset(), name
        assert raw_bytes(b) == raw_bytes(t), name
    # Storage sharing survives: views of one storage still alias one another.
    def sp(x):
        return x.storage().data_ptr()
    assert sp(back["base"]) == sp(back["transposed"]) == sp(back["sliced"]) == sp(back["row"])
    assert sp(back["flat"]) == sp(back["flat_view_a"]) == sp(back["flat_view_b"])
    assert sp(back["base"]) != sp(back["flat"])
    back["base"][0, 0] = 1234.5
    assert back["transposed"][0, 0] == 1234.5


def test_nested_values_round_trip(tmp_path, legacy):
    t = torch.arange(6, dtype=torch.float32)
    obj = {
        "ints": [0, 1, 255, 256, 65535, 65536, -1, -(2**31), 2**31, 2**62, -(2**63)],
        "floats": [0.0, -0.0, 1.5, 1e300, float("inf"), float("-inf")],
        "strings": ["", "ascii", "ünïcödé ✓ 日本語 🎉"],
        "bytes": b"\x00\x01\xfe\xff raw",
        "none": None, "bools": (True, False),
        "tuple": (1, (2, (3, t))), "ordered": collections.OrderedDict([("b", 1), ("a", t[2:])]),
        "int_keys": {0: "zero", 7: "seven"},
        "set": {1, 2, 3},
    }
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    save(obj, src, legacy)
    run_optforge("convert", src, dst)
    back = torch.load(dst, weights_only=False)
    assert back["ints"] == obj["ints"]
    assert [struct.pack("<d", x) for x in back["floats"]] == [struct.pack("<d", x) for x in obj["floats"]]
    assert back["strings"] == obj["strings"] and back["bytes"] == obj["bytes"]
    assert back["none"] is None and back["bools"] == (True, False)
    assert back["tuple"][0] == 1 and back["tuple"][1][1][0] == 3
    assert torch.equal(back["tuple"][1][1][1], t)
    assert isinstance(back["ordered"], collections.OrderedDict) and list(back["ordered"]) == ["b", "a"]
    assert torch.equal(back["ordered"]["a"], t[2:])
    assert back["int_keys"] == obj["int_keys"] and back["set"] == {1, 2, 3}


def test_metaseq_namespace_cfg_round_trips(tmp_path):
    cfg = {"model": Namespace(_name="transformer_lm_megatron", decoder_layers=2, decoder_embed_dim=16,
                              decoder_normalize_before=True, dropout=0.1),
           "common": {"fp16": True}}
    obj = {"cfg": cfg, "model": {"decoder.embed_tokens.weight": torch.randn(8, 16).half()},
           "optimizer_history": [{"num_updates": 10}], "extra_state": {"previous_training_time": 12.5}}
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(obj, src)
    text = run_optforge("inspect", src).stdout
    assert "decoder_layers=2" in text and "metaseq singleton" in text
    run_optforge("convert", src, dst)
    back = torch.load(dst)
    assert isinstance(back["cfg"]["model"], Namespace) and vars(back["cfg"]["model"]) == vars(cfg["model"])
    assert back["optimizer_history"] == obj["optimizer_history"] and back["extra_state"] == obj["extra_state"]
    assert torch.equal(back["model"]["decoder.embed_tokens.weight"], obj["model"]["decoder.embed_tokens.weight"])


def test_outputs_of_tensors_load_with_weights_only(tmp_path):
    # weights_only=True refuses anything that would need code: this load is the check.
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save({"w": torch.randn(3, 3), "nested": {"list": [torch.ones(2)]}}, src)
    run_optforge("convert", src, dst)
    back = torch.load(dst, weights_only=True)
    assert torch.equal(back["nested"]["list"][0], torch.ones(2))


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_dtype_cast_matches_torch_to(tmp_path, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4096, generator=g, dtype=torch.float64) * torch.logspace(-30, 30, 4096, dtype=torch.float64)
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 65504.0, 65520.0, 65519.99, 1e-8, 6e-8, 3e-8,
                             1.0 + 2**-11, 1.0 + 3 * 2**-11, 3.0e38, -3.4e38])
    d = {"f32": torch.cat([x.float(), specials]), "f64": x, "f16": x.half(), "bf16": x.bfloat16(),
         "i64": torch.arange(5), "view": x.float()[::2]}
    src, dst, dst_st = tmp_path / "in.pt", tmp_path / "out.pt", tmp_path / "out.safetensors"
    torch.save(d, src)
    run_optforge("convert", src, dst, "--dtype", dtype)
    run_optforge("convert", src, dst_st, "--dtype", dtype)
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[dtype]
    back, back_st = torch.load(dst, weights_only=True), st_load(dst_st)
    for name, t in d.items():
        want = t.to(tdt) if t.is_floating_point() else t
        for b in (back[name], back_st[name]):
            assert b.dtype == want.dtype, name
            assert raw_bytes(b) == raw_bytes(want), name


def test_safetensors_both_ways(tmp_path):
    g = torch.Generator().manual_seed(2)
    d = {f"t.{OUR_NAME[dt]}": random_tensor(dt, (2, 3, 4), g) for dt in ALL_DTYPES}
    d["scalar"] = torch.tensor(1.5)
    d["empty"] = torch.zeros(0, 3)
    st_in, pt_out, st_out = tmp_path / "in.safetensors", tmp_path / "out.pt", tmp_path / "out.safetensors"
    st_save(d, str(st_in), metadata={"format": "pt", "note": "hello"})
    info = inspect_json(st_in)
    assert info["format"] == "safetensors" and info["metadata"] == {"format": "pt", "note": "hello"}
    run_optforge("convert", st_in, pt_out)
    back = torch.load(pt_out, weights_only=True)
    assert set(back) == set(d)
    for k in d:
        assert back[k].dtype == d[k].dtype and raw_bytes(back[k]) == raw_bytes(d[k]), k
    # .pt (with views) -> safetensors, read by the safetensors package
    src = tmp_path / "views.pt"
    cases = {k: v for k, v in tensor_cases().items() if not v.is_complex()}
    torch.save(cases, src)
    run_optforge("convert", src, st_out)
    back = st_load(str(st_out))
    for k, v in cases.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and raw_bytes(back[k]) == raw_bytes(v), k
    from safetensors import safe_open
    with safe_open(str(st_out), "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_metaseq_checkpoint_to_safetensors_takes_the_model_dict(tmp_path):
    sd = {"decoder.embed_tokens.weight": torch.randn(8, 4).half(), "decoder.version": torch.tensor([3.0]).half()}
    src, dst = tmp_path / "ckpt.pt", tmp_path / "model.safetensors"
    torch.save({"cfg": {"model": Namespace(arch="x")}, "model": sd}, src)
    run_optforge("convert", src, dst)
    back = st_load(str(dst))
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_zip64_many_entries(tmp_path):
    # 70,000 storages: past the 65,535-entry limit of a plain zip directory, so zip64 records.
    d = {f"t{i}": torch.tensor([float(i)]) for i in range(70000)}
    src, dst = tmp_path / "in.pt", tmp_path / "out.pt"
    torch.save(d, src)
    run_optforge("convert", src, dst)
    back = torch.load(dst, weights_only=True)
    assert len(back) == 70000 and back["t69999"].item() == 69999.0


@pytest.mark.skipif(os.environ.get("OPTFORGE_SANITIZED") == "1", reason="4 GiB copy is too slow under ASan")
def test_zip64_entry_over_4gib(tmp_path):
    # One storage of 4 GiB + 64 bytes: sizes and offsets need zip64 extra fields.
    n = (2**32 + 64) // 2
    big = torch.empty(n, dtype=torch.float16)
    big[:8] = torch.arange(8)
    big[-8:] = torch.arange(8) + 100
    src, dst = tmp_path / "big.pt", tmp_path / "out.pt"
    torch.save({"small": torch.ones(3), "big": big, "after": torch.full((5,), 7.0)}, src)
    del big
    info = inspect_json(src)
    assert [t["nbytes"] for t in info["tensors"]] == [12, 2**32 + 64, 20]
    run_optforge("convert", src, dst)
    os.remove(src)
    back = torch.load(dst, weights_only=True, mmap=True) if "mmap" in torch.load.__code__.co_varnames \
        else torch.load(dst, weights_only=True)
    assert back["big"].numel() == n
    assert torch.equal(back["big"][:8], torch.arange(8).half())
    assert torch.equal(back["big"][-8:], (torch.arange(8) + 100).half())
    assert torch.equal(back["after"], torch.full((5,), 7.0))
