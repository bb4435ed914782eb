"""The KV cache's dtype (--kv-dtype) against transformers' OPTForCausalLM in f32.

A random pre-LN model scores a 520-token sequence: 8 tokens of prefill, then 512 single-token
steps, each attending over everything cached so far (up to 519 positions), so rounding in the
cache accumulates over the whole context. transformers keeps its cache in f32.
Bounds: f32 cache: 1e-4 (the bound of test_model.py: summation order only); f16 cache (the
default, 11 significant bits): 3e-3; bf16 (8 bits): 2e-2; and the f16 error must be below the
bf16 one, so the bounds tell the two apart. Measured on this model: f32 2.2e-6, f16 9.0e-4,
bf16 6.6e-3. `pytest -s tests/python/test_kv_dtype.py` prints the measured errors.
"""
import json

import numpy as np
import pytest
import torch

from conftest import run_optforge
from hf_reference import max_diff, random_opt

LENGTH, PREFILL = 520, 8
BOUNDS = {"f32": 1e-4, "f16": 3e-3, "bf16": 2e-2}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    m = random_opt(11, vocab_size=1003, max_position_embeddings=LENGTH, hidden_size=64, num_attention_heads=4,
                   ffn_dim=128, num_hidden_layers=2, word_embed_proj_dim=64, do_layer_norm_before=True,
                   dropout=0.0, attention_dropout=0.0, init_std=0.1, pad_token_id=1, bos_token_id=2,
                   eos_token_id=2)
    path = tmp_path_factory.mktemp("kv") / "st"
    m.save_pretrained(path, safe_serialization=True)
    g = torch.Generator().manual_seed(12)
    seq = [2] + torch.randint(3, 1003, (LENGTH - 1,), generator=g).tolist()
    with torch.no_grad():
        ref = m(torch.tensor([seq])).logits[0].numpy()
    assert np.abs(ref).max() > 1.0
    return path, seq, ref


def score_logits(path, seq, tmp_path, *extra):
    """optforge's logits [T, V] for one sequence (score --dump-logits)."""
    (tmp_path / "ids.jsonl").write_text(json.dumps(seq) + "\n")
    run_optforge("score", path, tmp_path / "ids.jsonl", "--ids", "--dump-logits", tmp_path / "l.npy", *extra)
    return np.load(tmp_path / "l.npy")[0]


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory):
    path, seq, _ = model
    out = {}
    for dt in (None, "f32", "f16", "bf16"):
        extra = ["--prefill", PREFILL] + ([] if dt is None else ["--kv-dtype", dt])
        out[dt] = score_logits(path, seq, tmp_path_factory.mktemp(f"run-{dt}"), *extra)
    return out


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_kv_cache_dtype_over_512_cached_positions(model, runs, dtype):
    _, seq, ref = model
    ours = runs[dtype]
    assert ours.shape == ref.shape == (LENGTH, 1003)
    err = max_diff(ours, ref)
    print(f"\n--kv-dtype {dtype}: max |logit - transformers f32| = {err:.2e} (bound {BOUNDS[dtype]:.0e})")
    assert err < BOUNDS[dtype], dtype


def test_f16_cache_is_closer_than_bf16(model, runs):
    """f16 keeps 3 more significant bits than bf16: its error must be the smaller one."""
    ref = model[2]
    f16, bf16 = max_diff(runs["f16"], ref), max_diff(runs["bf16"], ref)
    print(f"\nf16 cache error {f16:.2e} < bf16 cache error {bf16:.2e}")
    assert f16 < bf16


def test_whole_prompt_at_once(model, tmp_path):
    """All 520 tokens in one step: the blocked (online-softmax) prefill attention over many
    query and key blocks, against transformers; f32 cache, so the f32 bound."""
    path, seq, ref = model
    assert max_diff(score_logits(path, seq, tmp_path, "--kv-dtype", "f32"), ref) < BOUNDS["f32"]


def test_f16_is_the_default_and_differs_from_f32(runs):
    assert np.array_equal(runs[None], runs["f16"])
    assert max_diff(runs["f16"], runs["f32"]) > 0  # the option reaches the cache
    err = max_diff(runs["f16"], runs["f32"])
    print(f"\nf16 cache against f32 cache: {err:.2e} (bound {BOUNDS['f16']:.0e})")
    assert err < BOUNDS["f16"]  # f16 against f32 directly: the f16 bound
