"""metaseq's restored.pt carries an omegaconf DictConfig; outputs must survive Ctrl-C atomically."""
import os
import signal
import zipfile

import pytest
import torch
from omegaconf import OmegaConf

from conftest import assert_clean_error, optforge_path, run_optforge
from hard_kill_util import signal_mid_write


def test_restored_pt_with_dictconfig_is_read_and_written_as_plain_data(tmp_path):
    # As convert_to_singleton does: load_checkpoint_to_cpu turns cfg into a DictConfig (with the
    # model Namespace wrapped as a value), then torch.save.
    cfg = OmegaConf.create({"common": {"fp16": True, "seed": 1},
                            "model": {"_name": "transformer_lm_megatron", "decoder_layers": 2},
                            "optimization": {"lr": [0.0003]}})
    state = {"cfg": cfg, "model": {"decoder.embed_tokens.weight": torch.randn(4, 3).half()},
             "optimizer_history": [{"num_updates": 3}]}
    src, dst = tmp_path / "restored.pt", tmp_path / "out.pt"
    torch.save(state, src)
    text = run_optforge("inspect", src).stdout
    assert "omegaconf.dictconfig.DictConfig" in text and "decoder_layers=2" in text
    run_optforge("convert", src, dst)
    # Plain data only: no omegaconf class is named anywhere in the output's pickle. (torch 1.13's
    # weights_only loader cannot read floats, which this cfg holds, so check the pickle itself.)
    with zipfile.ZipFile(dst) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"omegaconf" not in pkl and b"typing" not in pkl
    back = torch.load(dst)
    assert back["cfg"] == OmegaConf.to_container(cfg)
    assert torch.equal(back["model"]["decoder.embed_tokens.weight"], state["model"]["decoder.embed_tokens.weight"])


def test_unknown_classes_are_refused_unless_permissive(tmp_path):
    src = tmp_path / "odd.pt"
    torch.save({"w": torch.ones(2), "when": __import__("datetime").date(2022, 5, 3)}, src)
    assert_clean_error(run_optforge("inspect", src, check=False), "datetime.date")
    out = run_optforge("inspect", "--permissive", src).stdout
    assert "datetime.date" in out and "w " in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_convert_leaves_no_output(tmp_path, sig):
    src, dst = tmp_path / "big.pt", tmp_path / "out.pt"
    run_optforge("demo-model", "--shape", "350m", "-o", src)
    before = sorted(os.listdir(tmp_path))
    signal_mid_write([optforge_path(), "convert", src, dst, "--dtype", "f32"], tmp_path, sig)
    assert sorted(os.listdir(tmp_path)) == before  # neither out.pt nor a temporary
