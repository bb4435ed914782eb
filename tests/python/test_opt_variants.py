"""Every architecture variant transformers' OPTConfig expresses, against transformers itself.

Small random models of each variant are built by transformers (OPTForCausalLM from an OPTConfig,
fixed torch seed, layer norms and biases randomised so every term counts) and saved with
save_pretrained. optforge loads the same folder; the references are transformers' own logits,
transformers' own greedy decoding, and the HF folder transformers wrote (for conversions).

Bounds as in test_model.py: f32 logits within 1e-4 (only summation order differs), greedy tokens
identical for 64 steps (a near-tie within 1e-4 is reported, not failed), conversions bit-exact.
Variants a metaseq or alpa layout cannot express must be refused with a clear error naming the
variant, and leave nothing behind.
"""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import OPTConfig, OPTForCausalLM

from conftest import assert_clean_error, run_optforge
from hf_reference import check_greedy_prompts, hf_cached_logits, hf_logits, max_diff, our_logits, random_opt

TOL = 1e-4
HEADS = 4
BASE = dict(vocab_size=1003, hidden_size=48, num_attention_heads=HEADS, ffn_dim=96, num_hidden_layers=2,
            max_position_embeddings=128, dropout=0.0, attention_dropout=0.0, init_std=0.1)

VARIANTS = {
    "gelu": dict(activation_function="gelu"),
    "gelu_new": dict(activation_function="gelu_new"),
    "no_bias": dict(enable_bias=False),
    "no_ln_affine": dict(layer_norm_elementwise_affine=False),
    "post_ln": dict(do_layer_norm_before=False),
    "no_final_ln": dict(_remove_final_layer_norm=True),
    "projections": dict(word_embed_proj_dim=32),  # pre-LN with project_in/out
    "post_ln_projections_gelu": dict(do_layer_norm_before=False, word_embed_proj_dim=32,
                                     activation_function="gelu_new"),
    "vocab_context_ids": dict(vocab_size=517, max_position_embeddings=90, pad_token_id=0, bos_token_id=5,
                              eos_token_id=6),
}
# What each layout cannot express (converting to it must fail clearly).
METASEQ_CANNOT = {"no_bias": "enable_bias", "no_ln_affine": "layer_norm_elementwise_affine"}
ALPA_CAN = {"post_ln", "projections", "vocab_context_ids"}
ARCH_KEYS = ["activation_function", "enable_bias", "layer_norm_elementwise_affine", "do_layer_norm_before",
             "_remove_final_layer_norm", "word_embed_proj_dim", "hidden_size", "ffn_dim", "num_hidden_layers",
             "num_attention_heads", "vocab_size", "max_position_embeddings"]


def make_model(variant, seed=0):
    return random_opt(seed, **{**BASE, **VARIANTS[variant]})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for v in VARIANTS:
        model = make_model(v)
        d = tmp_path_factory.mktemp(v) / "hf"
        model.save_pretrained(d, safe_serialization=True)
        out[v] = (model, d)
    return out


def vocab(v):
    return VARIANTS[v].get("vocab_size", BASE["vocab_size"])


def sequences(v, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    return [[2] + torch.randint(7, vocab(v), (L - 1,), generator=g).tolist() for L in lengths]


def failing(*args):
    """The error line of a command that must be refused cleanly."""
    return assert_clean_error(run_optforge(*args, check=False))


@pytest.mark.parametrize("variant", VARIANTS)
def test_prefill_logits_match_transformers(models, variant, tmp_path):
    model, hf = models[variant]
    seqs = sequences(variant, [21, 9], seed=1)
    ours = our_logits(hf, seqs, tmp_path)
    for b, s in enumerate(seqs):
        ref = hf_logits(model, s)
        assert np.abs(ref).max() > 0.5
        assert max_diff(ours[b, :len(s)], ref) < TOL, (variant, b)


@pytest.mark.parametrize("variant", VARIANTS)
def test_32_cached_steps_match_transformers(models, variant, tmp_path):
    model, hf = models[variant]
    seq = sequences(variant, [40], seed=2)[0]
    ours = our_logits(hf, [seq], tmp_path, "--prefill", 8)[0]
    ref = hf_cached_logits(model, seq, 8)
    assert ref.shape == ours.shape
    assert max_diff(ours, ref) < TOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_64_tokens_identical(models, variant):
    model, hf = models[variant]
    runs = []
    for prompt in sequences(variant, [6, 13], seed=4):
        proc = run_optforge("generate", hf, "--prompt-ids", ",".join(map(str, prompt)), "--temperature", 0,
                            "--max-tokens", 64, "--ignore-eos", "--json", "--kv-dtype", "f32")
        runs.append((prompt, json.loads(proc.stdout)["choices"][0]["ids"]))
    check_greedy_prompts(model, runs, 64, TOL)


def assert_same_hf_folder(a, b, ids_too=True):
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    keys = ARCH_KEYS + (["pad_token_id", "bos_token_id", "eos_token_id"] if ids_too else [])
    assert {k: ca.get(k) for k in keys} == {k: cb.get(k) for k in keys}


@pytest.mark.parametrize("variant", VARIANTS)
def test_hf_to_hf_keeps_every_switch(models, variant, tmp_path):
    _, hf = models[variant]
    run_optforge("convert", hf, "-o", tmp_path / "back", "--to", "hf")
    assert_same_hf_folder(hf, tmp_path / "back")
    assert OPTForCausalLM.from_pretrained(tmp_path / "back").config.activation_function == \
        VARIANTS[variant].get("activation_function", "relu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_hf_to_safetensors_state_dict_to_hf_keeps_every_switch(models, variant, tmp_path):
    """A bare state dict carries the config in its header; transformers loads it back too."""
    model, hf = models[variant]
    run_optforge("convert", hf, "-o", tmp_path / "m.safetensors", "--to", "safetensors")
    run_optforge("convert", tmp_path / "m.safetensors", "-o", tmp_path / "back", "--to", "hf")
    assert_same_hf_folder(hf, tmp_path / "back")
    seq = sequences(variant, [11], seed=6)[0]
    assert max_diff(our_logits(tmp_path / "m.safetensors", [seq], tmp_path)[0], hf_logits(model, seq)) < TOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_hf_to_metaseq_to_hf_bit_exact_and_metaseq_runs_the_variant(models, variant, tmp_path):
    model, hf = models[variant]
    mid = tmp_path / "restored.pt"
    if variant in METASEQ_CANNOT:
        assert METASEQ_CANNOT[variant] in failing("convert", hf, "-o", mid, "--to", "metaseq")
        assert not os.listdir(tmp_path)
        return
    run_optforge("convert", hf, "-o", mid, "--to", "metaseq")
    cfg = torch.load(mid)["cfg"]["model"]
    act = VARIANTS[variant].get("activation_function", "relu")
    assert cfg.activation_fn == {"gelu_new": "gelu_accurate"}.get(act, act)
    run_optforge("convert", mid, "-o", tmp_path / "back", "--to", "hf")
    # metaseq's dictionary fixes its token ids: those are the one thing it does not carry
    assert_same_hf_folder(hf, tmp_path / "back", ids_too=variant != "vocab_context_ids")
    # the metaseq checkpoint itself runs as the variant (activation_fn, no_decoder_final_norm)
    seq = sequences(variant, [17], seed=5)[0]
    assert max_diff(our_logits(mid, [seq], tmp_path)[0], hf_logits(model, seq)) < TOL


@pytest.mark.parametrize("variant", VARIANTS)
def test_hf_to_alpa_where_alpa_can_express_it(models, variant, tmp_path):
    _, hf = models[variant]
    if variant not in ALPA_CAN:
        assert "cannot express" in failing("convert", hf, "-o", tmp_path / "alpa", "--to", "alpa")
        assert not os.listdir(tmp_path)
        return
    run_optforge("convert", hf, "-o", tmp_path / "alpa", "--to", "alpa")
    run_optforge("convert", tmp_path / "alpa", "-o", tmp_path / "back", "--to", "hf", "--heads", HEADS)
    assert_same_hf_folder(hf, tmp_path / "back", ids_too=False)  # alpa's files carry no config


def test_untied_output_projection_is_refused_not_tied_silently(tmp_path):
    """transformers can untie OPT's lm_head (tie_word_embeddings=False); optforge runs tied heads
    only, so such a model must be refused rather than run with the embedding as its head."""
    torch.manual_seed(0)
    model = OPTForCausalLM(OPTConfig(**BASE, tie_word_embeddings=False)).eval()
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.randn_like(model.lm_head.weight))
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    assert "tie_word_embeddings" in failing("convert", tmp_path / "hf", "-o", tmp_path / "o.pt", "--to", "metaseq")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, tmp_path / "untied.safetensors")
    assert "lm_head" in failing("convert", tmp_path / "untied.safetensors", "-o", tmp_path / "o2.pt", "--to", "metaseq")
    assert sorted(os.listdir(tmp_path)) == ["hf", "untied.safetensors"]


def test_metaseq_activation_we_cannot_run_is_a_clear_error(models, tmp_path):
    """A metaseq cfg naming an activation optforge does not implement must not run as relu."""
    _, hf = models["gelu"]
    run_optforge("convert", hf, "-o", tmp_path / "restored.pt", "--to", "metaseq")
    ck = torch.load(tmp_path / "restored.pt")
    ck["cfg"]["model"].activation_fn = "swiglu"
    torch.save(ck, tmp_path / "odd.pt")
    err = failing("convert", tmp_path / "odd.pt", "-o", tmp_path / "o", "--to", "hf")
    assert "activation_fn 'swiglu'" in err and "odd.pt" in err
    assert sorted(os.listdir(tmp_path)) == ["odd.pt", "restored.pt"]
