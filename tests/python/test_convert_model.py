"""`optforge convert --to ...` against the real references: transformers (its own OPT conversion
script and OPTForCausalLM), numpy (alpa's layouts, with alpa's loading arithmetic redone here),
torch (metaseq singletons), safetensors."""
import json
import os

import numpy as np
import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM
from transformers.models.opt import convert_opt_original_pytorch_checkpoint_to_pytorch as hf_script

from conftest import assert_clean_error, run_optforge

ARCHS = {
    # pre-LN (every size but 350m), and 350m's post-LN with project_in/project_out (odd input dim)
    "pre_ln": dict(shape="125m", layers=2, embed_dim=64, heads=4, vocab=96, positions=40, input_dim=None),
    "post_ln_350m": dict(shape="350m", layers=2, embed_dim=64, heads=4, vocab=96, positions=40, input_dim=24),
}


def make_singleton(path, arch, seed=0):
    a = ARCHS[arch]
    args = ["demo-model", "-o", path, "--shape", a["shape"], "--layers", a["layers"], "--embed-dim", a["embed_dim"],
            "--heads", a["heads"], "--vocab", a["vocab"], "--positions", a["positions"], "--seed", seed]
    if a["input_dim"]:
        args += ["--input-dim", a["input_dim"]]
    run_optforge(*args)


def reference_config(arch):
    """The config a user would hand to transformers' script, written from the known dimensions."""
    a = ARCHS[arch]
    return OPTConfig(vocab_size=a["vocab"], hidden_size=a["embed_dim"], num_hidden_layers=a["layers"],
                     ffn_dim=4 * a["embed_dim"], num_attention_heads=a["heads"], max_position_embeddings=a["positions"],
                     word_embed_proj_dim=a["input_dim"] or a["embed_dim"], do_layer_norm_before=arch == "pre_ln",
                     pad_token_id=1, bos_token_id=2, eos_token_id=2)


@pytest.fixture(scope="module", params=list(ARCHS))
def converted(request, tmp_path_factory):
    arch = request.param
    d = tmp_path_factory.mktemp(arch)
    make_singleton(d / "restored.pt", arch)
    run_optforge("convert", d / "restored.pt", "-o", d / "ours", "--to", "hf")
    # transformers' own conversion of the same singleton
    reference_config(arch).save_pretrained(d / "ref_config")
    hf_script.convert_opt_checkpoint(str(d / "restored.pt"), str(d / "theirs"), str(d / "ref_config"))
    return arch, d


def test_hf_output_loads_and_matches_transformers_conversion(converted):
    arch, d = converted
    ours = OPTForCausalLM.from_pretrained(d / "ours", torch_dtype=torch.float32).eval()
    theirs = OPTForCausalLM.from_pretrained(d / "theirs", torch_dtype=torch.float32).eval()
    cfg = json.load(open(d / "ours" / "config.json"))
    assert cfg["torch_dtype"] == "float16" and cfg["model_type"] == "opt"
    assert cfg["do_layer_norm_before"] == (arch == "pre_ln")
    assert cfg["word_embed_proj_dim"] == (ARCHS[arch]["input_dim"] or ARCHS[arch]["embed_dim"])
    ref_cfg = theirs.config.to_dict()
    for k in ("hidden_size", "num_hidden_layers", "ffn_dim", "num_attention_heads", "vocab_size",
              "max_position_embeddings", "word_embed_proj_dim", "do_layer_norm_before", "pad_token_id",
              "bos_token_id", "eos_token_id", "enable_bias", "activation_function"):
        assert cfg[k] == ref_cfg[k], k
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    assert set(sd_o) == set(sd_t)
    for k in sd_t:
        assert torch.equal(sd_o[k], sd_t[k]), k
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, ARCHS[arch]["vocab"], (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding in one row
    with torch.no_grad():
        lo = ours(input_ids=ids, attention_mask=mask).logits
        lt = theirs(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(lo, lt)
    go = ours.generate(ids[:1], max_new_tokens=12, do_sample=False)
    gt = theirs.generate(ids[:1], max_new_tokens=12, do_sample=False)
    assert torch.equal(go, gt)


def test_hf_bin_sharded_with_index(converted, tmp_path):
    arch, d = converted
    out = tmp_path / "bin"
    run_optforge("convert", d / "restored.pt", "-o", out, "--to", "hf", "--format", "bin", "--max-shard-size", "20KB")
    index = json.load(open(out / "pytorch_model.bin.index.json"))
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and all((out / f).exists() for f in files)
    m = OPTForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    ref = OPTForCausalLM.from_pretrained(d / "theirs", torch_dtype=torch.float32)
    for k, v in ref.state_dict().items():
        assert torch.equal(m.state_dict()[k], v), k
    # the tokenizer files make the folder usable by AutoTokenizer as facebook/opt-* are
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out, use_fast=False)
    assert tok("Hello world").input_ids[0] == 2


def singleton_model(path):
    return torch.load(path)["model"]


def assert_same_model(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("via", ["hf", "hf-bin", "safetensors", "alpa"])
def test_round_trips_are_bit_exact(tmp_path, arch, via):
    src = tmp_path / "restored.pt"
    make_singleton(src, arch, seed=3)
    mid = tmp_path / ("mid.safetensors" if via == "safetensors" else "mid")
    extra = ["--format", "bin"] if via == "hf-bin" else []
    run_optforge("convert", src, "-o", mid, "--to", via.replace("-bin", ""), *extra)
    back = tmp_path / "back.pt"
    run_optforge("convert", mid, "-o", back, "--to", "metaseq", "--heads", ARCHS[arch]["heads"])
    assert_same_model(singleton_model(src), singleton_model(back))
    cfg = torch.load(back)["cfg"]["model"]
    assert cfg.decoder_attention_heads == ARCHS[arch]["heads"] and cfg.model_parallel_size == 1


def test_alpa_folder_is_numpy_with_torch_layout(tmp_path):
    src = tmp_path / "restored.pt"
    make_singleton(src, "pre_ln")
    run_optforge("convert", src, "-o", tmp_path / "alpa", "--to", "alpa")
    sd = singleton_model(src)
    files = sorted(os.listdir(tmp_path / "alpa"))
    assert files == sorted(k for k in sd if k != "decoder.version")
    for k in files:
        a = np.load(tmp_path / "alpa" / k)  # no extension, as alpa's folders
        assert a.dtype == np.float16 and a.flags.c_contiguous
        assert np.array_equal(a.view(np.uint16), sd[k].numpy().view(np.uint16)), k


def alpa_load_params_np(folder, layers):
    """alpa's load_params_np arithmetic, redone in numpy from its numpy folder."""
    load = lambda n: np.load(os.path.join(folder, n))
    T = "params.transformers."
    p = {T + "embeddings.word_embeddings.embedding": load("decoder.embed_tokens.weight"),
         T + "embeddings.position_embeddings.embedding": load("decoder.embed_positions.weight"),
         T + "layer_norm.scale": load("decoder.layer_norm.weight"),
         T + "layer_norm.bias": load("decoder.layer_norm.bias")}
    for i in range(layers):
        s, e = f"decoder.layers.{i}.", f"{T}encoder.{i}."
        w = [load(s + f"self_attn.{x}_proj.weight") for x in "qkv"]
        b = [load(s + f"self_attn.{x}_proj.bias") for x in "qkv"]
        # [3, out, in] -> [in, out, 3] -> [in, 3 * out]; bias [3, out] -> [out, 3] -> [3 * out]
        p[e + "attention.self.qkv_combined.kernel"] = np.stack(w).transpose((2, 1, 0)).reshape(w[0].shape[1], -1)
        p[e + "attention.self.qkv_combined.bias"] = np.stack(b).transpose((1, 0)).reshape(-1)
        p[e + "attention.dense.kernel"] = load(s + "self_attn.out_proj.weight").T
        p[e + "attention.dense.bias"] = load(s + "self_attn.out_proj.bias")
        p[e + "attention.layer_norm.scale"] = load(s + "self_attn_layer_norm.weight")
        p[e + "attention.layer_norm.bias"] = load(s + "self_attn_layer_norm.bias")
        p[e + "ffn.fc1.kernel"] = load(s + "fc1.weight").T
        p[e + "ffn.fc1.bias"] = load(s + "fc1.bias")
        p[e + "ffn.fc2.kernel"] = load(s + "fc2.weight").T
        p[e + "ffn.fc2.bias"] = load(s + "fc2.bias")
        p[e + "ffn.layer_norm.scale"] = load(s + "final_layer_norm.weight")
        p[e + "ffn.layer_norm.bias"] = load(s + "final_layer_norm.bias")
    return p


@pytest.mark.parametrize("dtype", [None, "f32"])
def test_alpa_tree_equals_alpas_own_loading(tmp_path, dtype):
    src = tmp_path / "restored.pt"
    make_singleton(src, "pre_ln", seed=5)
    extra = ["--dtype", dtype] if dtype else []
    run_optforge("convert", src, "-o", tmp_path / "alpa", "--to", "alpa", *extra)
    run_optforge("convert", src, "-o", tmp_path / "tree.npz", "--to", "alpa-tree", *extra)
    want = alpa_load_params_np(tmp_path / "alpa", ARCHS["pre_ln"]["layers"])
    got = np.load(tmp_path / "tree.npz")
    assert sorted(got.files) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert got[k].tobytes() == np.ascontiguousarray(v).tobytes(), k
    assert "alpa OPT parameter tree" in run_optforge("inspect", tmp_path / "tree.npz").stdout


def test_inspect_names_every_layout(tmp_path):
    src = tmp_path / "restored.pt"
    make_singleton(src, "pre_ln")
    for to, out in (("hf", "hf"), ("alpa", "alpa"), ("safetensors", "m.safetensors")):
        run_optforge("convert", src, "-o", tmp_path / out, "--to", to)
    assert "metaseq singleton" in run_optforge("inspect", src).stdout
    assert "Hugging Face folder" in run_optforge("inspect", tmp_path / "hf").stdout
    assert "alpa numpy folder" in run_optforge("inspect", tmp_path / "alpa").stdout
    assert "Hugging Face names" in run_optforge("inspect", tmp_path / "m.safetensors").stdout


def failing(*args):
    """The error line of a command that must be refused cleanly."""
    return assert_clean_error(run_optforge(*args, check=False))


def test_bad_inputs_are_clear_errors_and_leave_nothing(tmp_path):
    src = tmp_path / "restored.pt"
    make_singleton(src, "pre_ln")
    run_optforge("convert", src, "-o", tmp_path / "hf", "--to", "hf")
    # a half HF folder: config but no weights
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    assert "no weights" in failing("convert", half, "-o", tmp_path / "o1.pt", "--to", "metaseq")
    # a config that disagrees with the weights
    (tmp_path / "hf" / "config.json").write_text(
        (tmp_path / "hf" / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3'))
    assert "num_hidden_layers" in failing("convert", tmp_path / "hf", "-o", tmp_path / "o2.pt", "--to", "metaseq")
    # an unknown tensor name
    sd = torch.load(src)
    sd["model"]["decoder.layers.0.mystery.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "odd.pt")
    assert "decoder.layers.0.mystery.weight" in failing("convert", tmp_path / "odd.pt", "-o", tmp_path / "o3", "--to", "hf")
    # alpa's tree cannot express 350m-style models
    make_singleton(tmp_path / "350.pt", "post_ln_350m")
    assert "cannot express" in failing("convert", tmp_path / "350.pt", "-o", tmp_path / "o4.npz", "--to", "alpa-tree")
    # nothing was left behind by any failure
    left = sorted(n for n in os.listdir(tmp_path))
    assert left == ["350.pt", "half", "hf", "odd.pt", "restored.pt"], left


# --- sharded metaseq inputs, consolidated on the fly (real fairscale FSDP shards) -------------

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    import sys
    sys.path.insert(0, FIXTURES)
    import make_metaseq_checkpoint as mk
    out = tmp_path_factory.mktemp("sharded")
    mk.make_checkpoint(str(out), mk.ModelSpec(layers=2, embed_dim=16, heads=4, ffn=64, vocab=24, positions=6, mp=2,
                                              fsdp=3, dtype="fp16", arch="pre_ln", seed=11), released=True)
    return out


def test_sharded_input_to_hf_equals_transformers_conversion_of_the_truth(sharded, tmp_path):
    # transformers' own script on the ground-truth singleton (what metaseq's consolidation yields)
    OPTConfig(vocab_size=24, hidden_size=16, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
              max_position_embeddings=6, word_embed_proj_dim=16).save_pretrained(tmp_path / "cfg")
    hf_script.convert_opt_checkpoint(str(sharded / "reference_full.pt"), str(tmp_path / "theirs"), str(tmp_path / "cfg"))
    theirs = OPTForCausalLM.from_pretrained(tmp_path / "theirs", torch_dtype=torch.float32).state_dict()
    for src in (sharded, sharded / "checkpoint_last", sharded / "checkpoint_last-model_part-1-shard2.pt",
                sharded / "released"):
        out = tmp_path / ("ours-" + src.name)
        run_optforge("convert", src, "-o", out, "--to", "hf", "-j", 2)
        ours = OPTForCausalLM.from_pretrained(out, torch_dtype=torch.float32).state_dict()
        assert set(ours) == set(theirs)
        for k in theirs:
            assert torch.equal(ours[k], theirs[k]), (src, k)
    assert "sharded metaseq checkpoint (2 MP parts x 3 FSDP shards" in run_optforge("inspect", sharded).stdout


def test_metaseq_mp_parts_consolidate_back_with_the_python_reference(sharded, tmp_path):
    import sys
    sys.path.insert(0, FIXTURES)
    import reference_consolidate as rc
    truth = torch.load(sharded / "reference_full.pt")["model"]
    run_optforge("convert", sharded, "-o", tmp_path / "mp4", "--to", "metaseq", "--mp", 4)
    files = sorted(os.listdir(tmp_path / "mp4"))
    assert files == [f"reshard-model_part-{k}.pt" for k in range(4)]
    back = rc.consolidate(str(tmp_path / "mp4"))  # fairscale's consolidate_shard_weights + metaseq glue
    assert list(back) == list(truth)
    for k in truth:
        assert torch.equal(back[k], truth[k]), k
