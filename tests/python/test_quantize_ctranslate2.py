"""optforge's int8 weight quantization against CTranslate2's int8 (ctranslate2 4.3.1, its OPT
converter from transformers), on the same random pre-LN model, 64 sequences x 128 positions:
the mean KL(p_f32 || p_int8) against transformers' f32 logits must be no larger for optforge
than for CTranslate2. CTranslate2's float32 model is first held to transformers within 1e-4, so
the comparison is between the two quantizations, not between converters.

CTranslate2 on the CPU quantizes the weights per output row as optforge does, and also the
activations (int8 GEMM); optforge keeps activations in f32, so it is expected to lose less.
`pytest -s` prints both figures. The vocabulary is 1008 because CTranslate2's OPT converter pads
the vocabulary to a multiple of 8 (transformers' tokenizer files are written for its check)."""
import json

import numpy as np
import pytest
import torch

from hf_reference import max_diff, our_logits, random_opt

import ctranslate2  # pinned in scripts/requirements.txt
from ctranslate2.converters import TransformersConverter

VOCAB, N_SEQ, SEQ_LEN = 1008, 64, 128


def kl_and_top1(ref_logits, logits):
    ref = torch.from_numpy(ref_logits).double().log_softmax(-1)
    ours = torch.from_numpy(np.asarray(logits, dtype=np.float32)).double().log_softmax(-1)
    return float((ref.exp() * (ref - ours)).sum(-1).mean()), float((ref.argmax(-1) == ours.argmax(-1)).double().mean())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct2")
    model = random_opt(31, vocab_size=VOCAB, max_position_embeddings=SEQ_LEN + 8, hidden_size=64,
                       num_attention_heads=4, ffn_dim=256, num_hidden_layers=3, word_embed_proj_dim=64,
                       do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, init_std=0.1, pad_token_id=1,
                       bos_token_id=2, eos_token_id=2)
    model.save_pretrained(root / "hf", safe_serialization=True)
    # CTranslate2's converter reads the vocabulary from a tokenizer: one token per id.
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{f"t{i}": i for i in range(4, VOCAB)}}
    (root / "hf" / "vocab.json").write_text(json.dumps(vocab))
    (root / "hf" / "merges.txt").write_text("#version: 0.2\n")
    g = torch.Generator().manual_seed(8)
    seqs = [[2] + torch.randint(3, VOCAB, (SEQ_LEN - 1,), generator=g).tolist() for _ in range(N_SEQ)]
    with torch.no_grad():
        ref = model(torch.tensor(seqs)).logits.numpy()
    return root, seqs, ref


def ct2_logits(root, seqs, quantization):
    out = root / f"ct2-{quantization}"
    if not out.exists():
        TransformersConverter(str(root / "hf"), load_as_float16=False).convert(str(out), quantization=quantization)
    gen = ctranslate2.Generator(str(out), device="cpu", compute_type=quantization, inter_threads=1, intra_threads=2)
    return np.array(gen.forward_batch(seqs))


def test_ctranslate2_float32_matches_transformers(setup):
    root, seqs, ref = setup
    assert max_diff(ct2_logits(root, seqs[:8], "float32"), ref[:8]) < 1e-4


def test_our_int8_kl_is_not_above_ctranslate2_int8(setup, tmp_path):
    root, seqs, ref = setup
    theirs = ct2_logits(root, seqs, "int8")
    ours = our_logits(root / "hf", seqs, tmp_path, "--quantize", "int8")
    assert ours.shape == theirs.shape == ref.shape == (N_SEQ, SEQ_LEN, VOCAB)
    kl_ours, top1_ours = kl_and_top1(ref.reshape(-1, VOCAB), ours.reshape(-1, VOCAB))
    kl_ct2, top1_ct2 = kl_and_top1(ref.reshape(-1, VOCAB), theirs.reshape(-1, VOCAB))
    print(f"\nint8 vs transformers f32, {N_SEQ}x{SEQ_LEN} positions: optforge mean KL {kl_ours:.2e} "
          f"(top-1 {top1_ours:.4f}); CTranslate2 {ctranslate2.__version__} mean KL {kl_ct2:.2e} (top-1 {top1_ct2:.4f})")
    assert kl_ours <= kl_ct2
