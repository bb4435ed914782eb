"""The built-in default model: deterministic, loadable by torch, and its sharded form is what the
real fairscale/metaseq consolidation turns back into the singleton."""
import hashlib
import os
import sys

import torch

from conftest import run_optforge

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import reference_consolidate as rc  # noqa: E402

TINY = ["--shape", "125m", "--layers", "2", "--embed-dim", "32", "--heads", "4", "--vocab", "40", "--positions", "9"]


def model_digest(path):
    h = hashlib.sha256()
    for k, v in torch.load(path)["model"].items():
        h.update(k.encode())
        h.update(v.contiguous().view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def test_same_seed_same_bits_other_seed_other_bits(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run_optforge("demo-model", *TINY, "--seed", seed, "-o", tmp_path / f"{name}.pt")
    assert model_digest(tmp_path / "a.pt") == model_digest(tmp_path / "b.pt")
    assert model_digest(tmp_path / "a.pt") != model_digest(tmp_path / "c.pt")
    ck = torch.load(tmp_path / "a.pt")
    assert ck["cfg"]["model"].decoder_layers == 2 and ck["model"]["decoder.version"].item() == 3.0
    w = ck["model"]["decoder.layers.0.fc1.weight"].float()
    assert w.std() > 0.05 and abs(w.mean()) < 0.02  # not constant, roughly centred


def test_sharded_demo_consolidates_to_the_singleton_with_fairscale(tmp_path):
    run_optforge("demo-model", *TINY, "-o", tmp_path / "single.pt")
    run_optforge("demo-model", *TINY, "--mp", 2, "--fsdp", 3, "-o", tmp_path / "sharded")
    assert len(os.listdir(tmp_path / "sharded")) == 6
    truth = torch.load(tmp_path / "single.pt")["model"]
    back = rc.consolidate(str(tmp_path / "sharded"))  # fairscale consolidate_shard_weights + metaseq glue
    assert list(back) == list(truth)
    for k in truth:
        assert torch.equal(back[k], truth[k]), k
