"""optforge consolidate against the real libraries (issue #4).

Every input here is made by tests/fixtures/make_metaseq_checkpoint.py with the real fairscale FSDP
(gloo on CPU, several ranks) after a Megatron split; the truths are that generator's ground truth
(reference_full.pt: the full model in restored.pt order; reference_parts/part-K.pt: fairscale's
consolidate_shard_weights output per part). Our outputs are read back with torch.load and compared
tensor by tensor: same keys in the same order, same dtype, same shape, every bit.

The fixtures are generated once per session (a few seconds each); test_reshard.py reuses them.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_error, run_optforge

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))

import make_metaseq_checkpoint as mk  # noqa: E402
import reference_consolidate as rc  # noqa: E402


def _make(factory, name, released=False, unflattened=False, **spec):
    out = factory.mktemp(name)
    mk.make_checkpoint(str(out), mk.ModelSpec(**spec), released=released, unflattened_parts=unflattened)
    return out


# Small OPT-shaped models; flat lengths do not divide the FSDP degree (padding on several ranks).
@pytest.fixture(scope="session")
def ckpt_mp2_fsdp3(tmp_path_factory):
    """pre-LN, fused qkv, fp16, MP 2 x FSDP 3, with Adam state; also released + unflattened forms."""
    return _make(tmp_path_factory, "mp2fsdp3", released=True, unflattened=True, layers=2, embed_dim=16, heads=4,
                 ffn=64, vocab=24, positions=5, mp=2, fsdp=3, dtype="fp16", arch="pre_ln", seed=3,
                 with_optimizer_state=True)


@pytest.fixture(scope="session")
def ckpt_350m_fsdp4(tmp_path_factory):
    """350M-style post-LN with project_in/out (odd input dim), separate k/v/q, MP 1, FSDP 4,
    named checkpoint_last-shardR.pt and released as reshard.pt."""
    return _make(tmp_path_factory, "post_ln", released=True, layers=2, embed_dim=12, heads=4, ffn=32, vocab=24,
                 positions=5, mp=1, fsdp=4, dtype="fp16", arch="post_ln_350m", seed=5, part_suffix=False)


@pytest.fixture(scope="session")
def ckpt_mp4_fsdp2(tmp_path_factory):
    """fp32 on disk, MP 4 x FSDP 2."""
    return _make(tmp_path_factory, "mp4fsdp2", layers=2, embed_dim=16, heads=4, ffn=32, vocab=32, positions=5, mp=4,
                 fsdp=2, dtype="fp32", arch="pre_ln", seed=4)


@pytest.fixture(scope="session")
def ckpt_tiny_fsdp6(tmp_path_factory):
    """torch.chunk returns fewer chunks than ranks: the last two ranks are padding only."""
    return _make(tmp_path_factory, "tiny", layers=1, embed_dim=1, heads=1, ffn=4, vocab=8, positions=7, mp=1,
                 fsdp=6, dtype="fp32", arch="pre_ln", seed=7)


@pytest.fixture(scope="session")
def ckpt_other_run(tmp_path_factory):
    """Same shapes as ckpt_mp2_fsdp3 but another seed: a different training run."""
    return _make(tmp_path_factory, "other", layers=2, embed_dim=16, heads=4, ffn=64, vocab=24, positions=5, mp=2,
                 fsdp=3, dtype="fp16", arch="pre_ln", seed=11, with_optimizer_state=True)


def reference(d):
    return torch.load(os.path.join(d, "reference_full.pt"))["model"]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same(got, want, what):
    assert list(got.keys()) == list(want.keys()), f"{what}: keys/order differ\n{list(got)}\n{list(want)}"
    for k, w in want.items():
        g = got[k]
        assert g.dtype == w.dtype, f"{what}: {k} dtype {g.dtype} != {w.dtype}"
        assert tuple(g.shape) == tuple(w.shape), f"{what}: {k} shape {tuple(g.shape)} != {tuple(w.shape)}"
        assert torch.equal(g.view(torch.uint8) if g.dtype.is_floating_point else g,
                           w.view(torch.uint8) if w.dtype.is_floating_point else w), f"{what}: {k} bits differ"


ALL = ["ckpt_mp2_fsdp3", "ckpt_350m_fsdp4", "ckpt_mp4_fsdp2", "ckpt_tiny_fsdp6"]


@pytest.mark.parametrize("fixture", ALL)
def test_consolidate_matches_ground_truth(fixture, request, tmp_path, optforge_bin):
    d = request.getfixturevalue(fixture)
    out = tmp_path / "restored.pt"
    run_optforge("consolidate", d, "-o", out, "-q")
    sd = load(out)
    assert_same(sd["model"], reference(d), fixture)
    assert "decoder.output_projection.weight" not in sd["model"]
    assert list(sd["model"])[-1] == "decoder.version"
    # cfg: a Namespace as metaseq writes it, now a singleton; no stale shard_metadata / optimizer
    assert sd["cfg"]["model"].model_parallel_size == 1
    assert "shard_metadata" not in sd and "last_optimizer_state" not in sd
    shard0 = load(next(Path(d).glob("checkpoint_last*shard0.pt")))
    for key in ("criterion", "optimizer_history", "task_state", "extra_state"):
        assert sd[key] == shard0[key]


def test_consolidate_prefix_and_single_thread(ckpt_mp2_fsdp3, tmp_path):
    out = tmp_path / "c.pt"
    run_optforge("consolidate", ckpt_mp2_fsdp3 / "checkpoint_last", "-o", out, "-j", "1", "-q")
    assert_same(load(out)["model"], reference(ckpt_mp2_fsdp3), "-j 1 with a path prefix")


@pytest.mark.parametrize("fixture", ["ckpt_mp2_fsdp3", "ckpt_mp4_fsdp2", "ckpt_350m_fsdp4"])
def test_no_stitch_megatron_matches_fairscale_per_part(fixture, request, tmp_path):
    d = request.getfixturevalue(fixture)
    run_optforge("consolidate", d, "-o", tmp_path / "cons.pt", "--no-stitch-megatron", "-q")
    parts = sorted(Path(d, "reference_parts").glob("part-*.pt"))
    assert parts
    for k, ref in enumerate(parts):
        got = load(tmp_path / f"cons-model_part-{k}.pt")
        assert_same(got["model"], torch.load(ref), f"part {k}")
    # and fairscale itself agrees with the generator's per-part truth
    for k, sd in enumerate(rc.consolidate_parts(str(d))):
        assert_same(sd, torch.load(parts[k]), f"fairscale part {k}")


@pytest.mark.parametrize("fixture,sub", [("ckpt_mp2_fsdp3", "released"), ("ckpt_mp2_fsdp3", "unflattened"),
                                         ("ckpt_350m_fsdp4", "released")])
def test_released_and_unflattened_inputs(fixture, sub, request, tmp_path):
    d = request.getfixturevalue(fixture)
    out = tmp_path / "c.pt"
    run_optforge("consolidate", d / sub, "-o", out, "-q")
    assert_same(load(out)["model"], reference(d), f"{fixture}/{sub}")


def test_dtype_cast_rounds_like_torch(ckpt_mp2_fsdp3, tmp_path):
    out = tmp_path / "bf16.pt"
    run_optforge("consolidate", ckpt_mp2_fsdp3, "-o", out, "--dtype", "bf16", "-q")
    want = {k: v.to(torch.bfloat16) for k, v in reference(ckpt_mp2_fsdp3).items()}
    assert_same(load(out)["model"], want, "bf16")


def test_dry_run_writes_nothing(ckpt_mp2_fsdp3, tmp_path):
    out = tmp_path / "c.pt"
    p = run_optforge("consolidate", ckpt_mp2_fsdp3, "-o", out, "--dry-run")
    assert "checkpoint_last-model_part-1-shard2.pt" in p.stdout and str(out) in p.stdout
    assert not out.exists() and not any(tmp_path.iterdir())


def _copy_shards(src, dst):
    dst.mkdir()
    for f in Path(src).glob("checkpoint_last*.pt"):
        shutil.copy(f, dst / f.name)
    return dst


def _expect_failure(args, out, *needles):
    line = assert_clean_error(run_optforge(*args, check=False), *needles)
    assert not Path(out).exists(), "partial output left behind"
    leftovers = [f for f in Path(out).parent.iterdir() if ".tmp-" in f.name]
    assert not leftovers, leftovers
    return line


@pytest.mark.parametrize("missing", ["checkpoint_last-model_part-1-shard1.pt", "checkpoint_last-model_part-0-shard2.pt"])
def test_missing_shard(ckpt_mp2_fsdp3, tmp_path, missing):
    d = _copy_shards(ckpt_mp2_fsdp3, tmp_path / "in")
    (d / missing).unlink()
    out = tmp_path / "c.pt"
    _expect_failure(["consolidate", d, "-o", out], out, "missing")


def test_missing_last_shard_of_every_part(ckpt_mp2_fsdp3, tmp_path):
    d = _copy_shards(ckpt_mp2_fsdp3, tmp_path / "in")
    for f in d.glob("*-shard2.pt"):
        f.unlink()
    out = tmp_path / "c.pt"
    _expect_failure(["consolidate", d, "-o", out], out, "distributed_world_size")


def test_shard_from_another_run(ckpt_mp2_fsdp3, ckpt_other_run, tmp_path):
    d = _copy_shards(ckpt_mp2_fsdp3, tmp_path / "in")
    name = "checkpoint_last-model_part-1-shard1.pt"
    shutil.copy(ckpt_other_run / name, d / name)
    out = tmp_path / "c.pt"
    _expect_failure(["consolidate", d, "-o", out], out, name, "another run")


def test_truncated_shard(ckpt_mp2_fsdp3, tmp_path):
    d = _copy_shards(ckpt_mp2_fsdp3, tmp_path / "in")
    f = d / "checkpoint_last-model_part-0-shard1.pt"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    out = tmp_path / "c.pt"
    _expect_failure(["consolidate", d, "-o", out], out, f.name)


def test_inputs_untouched(ckpt_mp2_fsdp3, tmp_path):
    before = {f.name: f.read_bytes() for f in ckpt_mp2_fsdp3.glob("checkpoint_last*.pt")}
    run_optforge("consolidate", ckpt_mp2_fsdp3, "-o", tmp_path / "c.pt", "-q")
    assert before == {f.name: f.read_bytes() for f in ckpt_mp2_fsdp3.glob("checkpoint_last*.pt")}


def test_replicated_disagreement_is_reported(ckpt_mp2_fsdp3, tmp_path):
    d = tmp_path / "in"
    shutil.copytree(ckpt_mp2_fsdp3 / "unflattened", d)
    f = d / "reshard-model_part-1.pt"
    sd = torch.load(f)
    key = "decoder.layers.1.final_layer_norm.bias"
    sd["model"][key] = sd["model"][key].clone()
    sd["model"][key][3] += 0.5
    torch.save(sd, f)
    out = tmp_path / "c.pt"
    p = run_optforge("consolidate", d, "-o", out, "-q")
    assert key in p.stderr and "part 1" in p.stderr
    assert_same(load(out)["model"], reference(ckpt_mp2_fsdp3), "part 0 kept")  # metaseq semantics: part 0 wins
    out2 = tmp_path / "strict.pt"
    # Refused, with each differing tensor listed on a line of its own before the error line (so
    # not assert_clean_error's single line): exit 1, nothing written.
    p = run_optforge("consolidate", d, "-o", out2, "--strict-replicas", check=False)
    *listed, error = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(listed) == 1 and key in listed[0] and "part 1" in listed[0], p.stderr
    assert listed[0].startswith("optforge: note: ") and "is kept" not in listed[0], p.stderr  # nothing is kept
    assert error.startswith("optforge: error: ") and key in error and "--strict-replicas" in error, p.stderr
    assert not out2.exists() and not [f for f in tmp_path.iterdir() if ".tmp-" in f.name]
