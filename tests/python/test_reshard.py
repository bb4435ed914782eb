"""optforge reshard against the real libraries (issue #4).

Resharded outputs are read by the Python reference (tests/fixtures/reference_consolidate.py:
torch.load + fairscale's FullyShardedDataParallel.consolidate_shard_weights + metaseq's glue), which
must reproduce the generator's ground truth bit for bit; their structure is checked against
fairscale's sharding rule; the optimizer moments are compared with the generator's replay of the
real Adam steps. Fixtures come from test_consolidate.py (generated once per session).
"""
import os

import pytest
import torch

from conftest import assert_clean_error, run_optforge
from test_consolidate import (assert_same, ckpt_350m_fsdp4, ckpt_mp2_fsdp3, ckpt_mp4_fsdp2,  # noqa: F401
                              load, rc, reference)


def fsdp_padding(n, world, rank):
    """fairscale FSDP._get_shard: torch.chunk, then pad every chunk to the first one's length."""
    if world == 1:
        return 0
    chunks = list(torch.zeros(n).chunk(world))
    return chunks[0].numel() - (chunks[rank].numel() if rank < len(chunks) else 0)


def check_structure(outdir, mp, fsdp):
    files = sorted(os.listdir(outdir))
    assert files == sorted(f"checkpoint_last-model_part-{m}-shard{r}.pt" for m in range(mp) for r in range(fsdp))
    for m in range(mp):
        for r in range(fsdp):
            sd = load(os.path.join(outdir, f"checkpoint_last-model_part-{m}-shard{r}.pt"))
            keys = list(sd["model"])
            assert keys[0] == "flat_param_0" and keys[1] == "decoder.version"
            assert all(k.endswith("flat_param_0") for k in keys[2:])
            md = sd["shard_metadata"]
            assert md["buffer_names"] == ["decoder.version"]
            assert md["param_metadata"][0]["fsdp_path"] == ""
            assert md["param_metadata"][0]["shared_param_info"] == [
                ("decoder.embed_tokens.weight", "decoder.output_projection.weight")]
            for inst in md["param_metadata"]:
                info = inst["params"]["flat_param_0"]
                assert list(info) == ["names", "shapes", "numels", "padding"]
                n = sum(info["numels"])
                key = (inst["fsdp_path"] + "." if inst["fsdp_path"] else "") + "flat_param_0"
                flat = sd["model"][key]
                assert info["padding"] == fsdp_padding(n, fsdp, r), (key, r)
                assert flat.numel() == (n if fsdp == 1 else -(-n // fsdp))
                if info["padding"]:
                    assert not flat[flat.numel() - info["padding"]:].any(), "padding must be zeros"
            assert sd["cfg"]["model"].model_parallel_size == mp
            assert sd["cfg"]["distributed_training"]["distributed_world_size"] == mp * fsdp


PAIRS = [(1, 1), (2, 1), (4, 2), (3, 4), (1, 4), (2, 2)]


@pytest.mark.parametrize("fsdp,mp", PAIRS)
def test_reshard_then_reference_consolidation(ckpt_mp2_fsdp3, tmp_path, fsdp, mp):  # noqa: F811
    out = tmp_path / "out"
    run_optforge("reshard", ckpt_mp2_fsdp3, "-o", out, "--fsdp", fsdp, "--mp", mp, "-q")
    check_structure(out, mp, fsdp)
    assert_same(rc.consolidate(str(out)), reference(ckpt_mp2_fsdp3), f"fsdp {fsdp} mp {mp}")


def test_reshard_fp32_mp4_to_mp1(ckpt_mp4_fsdp2, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    run_optforge("reshard", ckpt_mp4_fsdp2, "-o", out, "--fsdp", 3, "--mp", 1, "-j", 1, "-q")
    check_structure(out, 1, 3)
    assert_same(rc.consolidate(str(out)), reference(ckpt_mp4_fsdp2), "mp4 -> mp1")


def test_reshard_post_ln_350m(ckpt_350m_fsdp4, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    run_optforge("reshard", ckpt_350m_fsdp4, "-o", out, "--fsdp", 3, "--mp", 1, "-q")
    assert_same(rc.consolidate(str(out)), reference(ckpt_350m_fsdp4), "350m fsdp 3")


def test_reshard_a_restored_singleton(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    """A restored.pt-style singleton (split k/v/q, written by torch) back to raw shards: qkv fused again."""
    shard0 = load(ckpt_mp2_fsdp3 / "checkpoint_last-model_part-0-shard0.pt")
    single = tmp_path / "restored.pt"
    cfg = shard0["cfg"]
    cfg["model"].model_parallel_size = 1
    torch.save({"cfg": cfg, "model": reference(ckpt_mp2_fsdp3), "criterion": None, "optimizer_history": [],
                "task_state": {}, "extra_state": {}}, single)
    out = tmp_path / "out"
    run_optforge("reshard", single, "-o", out, "--fsdp", 2, "--mp", 2, "-q")
    sd = load(out / "checkpoint_last-model_part-1-shard0.pt")
    names = sd["shard_metadata"]["param_metadata"][1]["params"]["flat_param_0"]["names"]
    assert names[0] == "self_attn.qkv_proj.weight"
    assert_same(rc.consolidate(str(out)), reference(ckpt_mp2_fsdp3), "singleton -> mp2 x fsdp2")


def unpadded_moments(outdir, part, fsdp, n_inst):
    shards = [load(os.path.join(outdir, f"checkpoint_last-model_part-{part}-shard{r}.pt")) for r in range(fsdp)]
    out = []
    for i in range(n_inst):
        d = {}
        for key in ("exp_avg", "exp_avg_sq"):
            pieces = []
            for s in shards:
                pad = s["shard_metadata"]["param_metadata"][i]["params"]["flat_param_0"]["padding"]
                t = s["last_optimizer_state"]["state"][i][key]
                assert t.dtype == torch.float32
                pieces.append(t[:t.numel() - pad])
            d[key] = torch.cat(pieces)
        d["step"] = shards[0]["last_optimizer_state"]["state"][i]["step"]
        out.append(d)
    return shards[0], out


def test_optimizer_state_round_trips_through_other_mp(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    truth = torch.load(ckpt_mp2_fsdp3 / "reference_full.pt")["optimizer"]   # [part][instance]
    run_optforge("reshard", ckpt_mp2_fsdp3, "-o", tmp_path / "a", "--fsdp", 2, "--mp", 4, "-q")
    run_optforge("reshard", tmp_path / "a", "-o", tmp_path / "b", "--fsdp", 4, "--mp", 2, "-q")
    src0 = load(ckpt_mp2_fsdp3 / "checkpoint_last-model_part-0-shard0.pt")["last_optimizer_state"]
    for part in range(2):
        s0, got = unpadded_moments(tmp_path / "b", part, 4, len(truth[part]))
        for i, want in enumerate(truth[part]):
            assert torch.equal(got[i]["exp_avg"], want["exp_avg"]), (part, i)
            assert torch.equal(got[i]["exp_avg_sq"], want["exp_avg_sq"]), (part, i)
            assert got[i]["step"] == want["step"]
        assert s0["last_optimizer_state"]["param_groups"] == src0["param_groups"]
        assert s0["last_optimizer_state"]["loss_scale"] == src0["loss_scale"]
    assert_same(rc.consolidate(str(tmp_path / "b")), reference(ckpt_mp2_fsdp3), "weights after 2 -> 4 -> 2")


def test_drop_optimizer_state(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    run_optforge("reshard", ckpt_mp2_fsdp3, "-o", tmp_path / "o", "--fsdp", 2, "--mp", 2, "--drop-optimizer-state", "-q")
    sd = load(tmp_path / "o" / "checkpoint_last-model_part-0-shard0.pt")
    assert "last_optimizer_state" not in sd


def test_mp_not_dividing_heads_fails_cleanly(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    out = tmp_path / "o"
    assert_clean_error(run_optforge("reshard", ckpt_mp2_fsdp3, "-o", out, "--fsdp", 2, "--mp", 3, check=False),
                       "--mp 3", "heads", "qkv_proj")
    assert not out.exists()


def test_dry_run_lists_outputs(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    out = tmp_path / "o"
    p = run_optforge("reshard", ckpt_mp2_fsdp3, "-o", out, "--fsdp", 4, "--mp", 1, "--dry-run")
    assert "checkpoint_last-model_part-0-shard3.pt" in p.stdout
    assert not out.exists()


def test_dry_run_refuses_a_folder_the_real_run_refuses(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    # The real run writes an AtomicDir, which needs a new or empty folder; the plan says so too.
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in (["--dry-run"], []):
        p = run_optforge("reshard", ckpt_mp2_fsdp3, "-o", out, "--fsdp", 2, "--mp", 1, *extra, check=False)
        assert p.returncode == 1 and "not empty" in p.stderr and "notes.txt" in p.stderr, p.stderr
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_refuses_folder_with_another_checkpoint(ckpt_mp2_fsdp3, tmp_path):  # noqa: F811
    out = tmp_path / "o"
    run_optforge("reshard", ckpt_mp2_fsdp3, "-o", out, "--fsdp", 1, "--mp", 1, "-q")
    assert_clean_error(run_optforge("reshard", ckpt_mp2_fsdp3, "-o", out, "--fsdp", 2, "--mp", 1, check=False),
                       "already holds")
    assert sorted(os.listdir(out)) == ["checkpoint_last-model_part-0-shard0.pt"]
