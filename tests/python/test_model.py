"""The OPT forward pass and generation against transformers' OPTForCausalLM.

Small random models of both architectures (pre-LN, and 350M-style post-LN with
word_embed_proj_dim != hidden_size, i.e. project_in/project_out) are built by transformers from a
fixed torch seed and saved as safetensors and as pytorch_model.bin; transformers and optforge load
the same files. optforge dumps logits with the hidden `score --dump-logits` (every position,
[B, T, V] float32) and prints greedy tokens with `generate --json`. We also load optforge's own
`demo-model` metaseq singleton in transformers (renamed as docs/spec-checkpoints.md §Hugging Face layout says).

Bounds: f32 logits within 1e-4 of transformers' (both accumulate in f32; only summation order
differs). f16/bf16 checkpoints: optforge computes in f32 on the stored weights, so it is held to
the same 1e-4 against transformers in f32 on the same (upcast) weights; against transformers
computing natively in bf16 the difference is bf16 activation rounding, bounded here by 0.25
(measured about 0.03-0.08 on these models).
"""
import json

import numpy as np
import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from conftest import run_optforge
from hf_reference import check_greedy_prompts, hf_cached_logits, hf_logits, max_diff, our_logits, random_opt

TOL = 1e-4
VOCAB = 1003  # not a multiple of the kernels' tile sizes, so their tails run

ARCHS = {
    # hidden 52 / 4 heads: head_dim 13 and widths that are not multiples of 8 (SIMD tails)
    "pre_ln": dict(hidden_size=52, num_attention_heads=4, ffn_dim=100, num_hidden_layers=3,
                   word_embed_proj_dim=52, do_layer_norm_before=True),
    # OPT-350m's block: post-LN, no final LN, project_in/out between 40 and 64
    "post_ln": dict(hidden_size=64, num_attention_heads=4, ffn_dim=256, num_hidden_layers=3,
                    word_embed_proj_dim=40, do_layer_norm_before=False),
}


def make_model(arch, seed=0):
    return random_opt(seed, vocab_size=VOCAB, max_position_embeddings=256, dropout=0.0, attention_dropout=0.0,
                      init_std=0.1, pad_token_id=1, bos_token_id=2, eos_token_id=2, **ARCHS[arch])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """arch -> (f32 HF model, {format: saved path})"""
    out = {}
    for arch in ARCHS:
        model = make_model(arch)
        root = tmp_path_factory.mktemp(arch)
        model.save_pretrained(root / "st", safe_serialization=True)
        model.save_pretrained(root / "bin", safe_serialization=False)
        for dt, name in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
            make_model(arch).to(dt).save_pretrained(root / name, safe_serialization=True)
        out[arch] = (model, root)
    return out


def sequences(n, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    return [[2] + torch.randint(3, VOCAB, (L - 1,), generator=g).tolist() for L in lengths][:n]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fmt", ["st", "bin"])
def test_prefill_logits_match_transformers(models, arch, fmt, tmp_path):
    model, root = models[arch]
    seqs = sequences(3, [20, 7, 33], seed=1)
    ours = our_logits(root / fmt, seqs, tmp_path)  # the three run as one ragged batch
    for b, s in enumerate(seqs):
        ref = hf_logits(model, s)
        assert np.abs(ref).max() > 1.0  # the model is not trivially near zero
        assert max_diff(ours[b, :len(s)], ref) < TOL, (arch, fmt, b)


@pytest.mark.parametrize("arch", ARCHS)
def test_32_incremental_steps_match_transformers(models, arch, tmp_path):
    """Prefill 8 tokens, then 32 single-token steps through the KV cache, on both sides."""
    model, root = models[arch]
    seq = sequences(1, [40], seed=2)[0]
    ours = our_logits(root / "st", [seq], tmp_path, "--prefill", 8)[0]
    ref = hf_cached_logits(model, seq, 8)
    assert ref.shape == ours.shape
    assert max_diff(ours, ref) < TOL


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padded_batch_equals_one_by_one(models, arch, tmp_path):
    """HF-style left padding (pad id 1, mask 0) with a partial prefill then incremental steps:
    every row equals transformers run on that sequence alone, and transformers' own padded batch."""
    model, root = models[arch]
    seqs = sequences(4, [5, 17, 11, 30], seed=3)
    ours = our_logits(root / "st", seqs, tmp_path, "--left-pad", "--prefill", 12)
    T = max(map(len, seqs))
    ids = torch.tensor([[1] * (T - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in seqs])
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits.numpy()
    for b, s in enumerate(seqs):
        ref = hf_logits(model, s)
        assert max_diff(ours[b, :len(s)], ref) < TOL, b
        assert max_diff(ours[b, :len(s)], batched[b, T - len(s):]) < TOL, b


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_64_tokens_identical(models, arch):
    model, root = models[arch]
    runs = []
    for prompt in sequences(3, [6, 1, 13], seed=4):
        proc = run_optforge("generate", root / "st", "--prompt-ids", ",".join(map(str, prompt)),
                            "--temperature", 0, "--max-tokens", 64, "--ignore-eos", "--json", "--kv-dtype", "f32")
        runs.append((prompt, json.loads(proc.stdout)["choices"][0]["ids"]))
    check_greedy_prompts(model, runs, 64, TOL)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_half_precision_checkpoints(models, arch, dtype, tmp_path):
    _, root = models[arch]
    seqs = sequences(2, [25, 9], seed=5)
    ours = our_logits(root / dtype, seqs, tmp_path)
    stored = OPTForCausalLM.from_pretrained(root / dtype, torch_dtype=torch.float32).eval()
    native = OPTForCausalLM.from_pretrained(root / dtype, torch_dtype=torch.bfloat16).eval() if dtype == "bf16" else None
    for b, s in enumerate(seqs):
        assert max_diff(ours[b, :len(s)], hf_logits(stored, s)) < TOL
        if native is not None:  # torch 1.13 has no f16 matmul on CPU; bf16 it has
            assert max_diff(ours[b, :len(s)], hf_logits(native, s)) < 0.25


@pytest.mark.parametrize("arch", ARCHS)
def test_perplexity_and_echo_logprobs_match_transformers(models, arch, tmp_path):
    model, root = models[arch]
    seq = sequences(1, [24], seed=6)[0]
    with torch.no_grad():
        ref = model(torch.tensor([seq]), labels=torch.tensor([seq]))
    lp = torch.log_softmax(ref.logits[0, :-1].double(), -1)
    ref_lp = lp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])].numpy()
    (tmp_path / "ids.jsonl").write_text(json.dumps(seq) + "\n")
    scored = json.loads(run_optforge("score", root / "st", tmp_path / "ids.jsonl", "--ids", "--json",
                                     "--kv-dtype", "f32").stdout)
    assert scored["tokens"][0]["logprob"] is None
    assert np.allclose([t["logprob"] for t in scored["tokens"][1:]], ref_lp, atol=TOL)
    assert abs(scored["perplexity"] - float(torch.exp(ref.loss))) < 1e-3 * float(torch.exp(ref.loss))
    gen = json.loads(run_optforge("generate", root / "st", "--prompt-ids", ",".join(map(str, seq)), "--echo",
                                  "--max-tokens", 1, "--temperature", 0, "--json", "--top-logprobs", 3,
                                  "--kv-dtype", "f32").stdout)
    toks = gen["choices"][0]["tokens"]
    assert [t["id"] for t in toks[:len(seq)]] == seq and toks[0]["logprob"] is None
    assert np.allclose([t["logprob"] for t in toks[1:len(seq)]], ref_lp, atol=TOL)
    top = toks[5]["top_logprobs"]
    ref_top = torch.topk(lp[4], 3)
    assert [t["id"] for t in top] == ref_top.indices.tolist()
    assert np.allclose([t["logprob"] for t in top], ref_top.values.numpy(), atol=TOL)


def metaseq_to_hf(sd):
    """docs/spec-checkpoints.md §Hugging Face layout: metaseq singleton names -> OPTForCausalLM's."""
    out = {}
    for k, v in sd.items():
        if k in ("decoder.version", "decoder.output_projection.weight"):
            continue
        k = k.replace("decoder.project_in_dim.", "decoder.project_in.")
        k = k.replace("decoder.project_out_dim.", "decoder.project_out.")
        if k.startswith("decoder.layer_norm."):
            k = k.replace("decoder.layer_norm.", "decoder.final_layer_norm.")
        out["model." + k] = v
    out["lm_head.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


@pytest.mark.parametrize("shape,extra", [("125m", []), ("350m", ["--input-dim", 24])])
def test_our_demo_model_in_transformers(shape, extra, tmp_path):
    path = tmp_path / "demo.pt"
    run_optforge("demo-model", "-o", path, "--shape", shape, "--layers", 2, "--embed-dim", 48, "--heads", 3,
                 "--vocab", 515, "--positions", 64, "--dtype", "f32", "--seed", 7, *extra)
    ckpt = torch.load(path)
    m = ckpt["cfg"]["model"]
    cfg = OPTConfig(vocab_size=515, hidden_size=m.decoder_embed_dim, num_attention_heads=m.decoder_attention_heads,
                    ffn_dim=m.decoder_ffn_embed_dim, num_hidden_layers=m.decoder_layers,
                    max_position_embeddings=m.max_target_positions, word_embed_proj_dim=m.decoder_input_dim,
                    do_layer_norm_before=m.decoder_normalize_before, dropout=0.0)
    model = OPTForCausalLM(cfg).eval()
    model.load_state_dict(metaseq_to_hf(ckpt["model"]), strict=True)
    seqs = [[2, 40, 9, 300, 514, 17, 3, 3, 250], [2, 7]]
    ids_file = tmp_path / "ids.jsonl"
    ids_file.write_text("".join(json.dumps(s) + "\n" for s in seqs))
    run_optforge("score", path, ids_file, "--ids", "--dump-logits", tmp_path / "l.npy", "--prefill", 4,
                 "--kv-dtype", "f32")
    ours = np.load(tmp_path / "l.npy")
    for b, s in enumerate(seqs):
        assert max_diff(ours[b, :len(s)], hf_logits(model, s)) < TOL


def test_stop_sequences_and_sampling_options(tmp_path):
    """Real vocabulary (the built-in tokenizer), so text and stop strings mean something."""
    path = tmp_path / "demo.pt"
    run_optforge("demo-model", "-o", path, "--shape", "125m", "--layers", 1, "--embed-dim", 16, "--heads", 2,
                 "--positions", 128, "--dtype", "f16")
    base = ["generate", path, "--prompt", "Hello world", "--json", "--max-tokens", 24, "--ignore-eos"]
    greedy = json.loads(run_optforge(*base, "--temperature", 0).stdout)["choices"][0]
    text = greedy["text"]
    assert len(greedy["ids"]) == 24 and greedy["finish_reason"] == "length"
    stop = text[len(text) // 2:len(text) // 2 + 3]
    stopped = json.loads(run_optforge(*base, "--temperature", 0, "--stop", stop).stdout)["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["text"] == text[:text.index(stop)]
    # Same seed, same samples; samples differ from each other; top-k 1 is greedy.
    a = json.loads(run_optforge(*base, "--n", 3, "--seed", 5, "--top-p", 0.9).stdout)["choices"]
    b = json.loads(run_optforge(*base, "--n", 3, "--seed", 5, "--top-p", 0.9).stdout)["choices"]
    assert [c["ids"] for c in a] == [c["ids"] for c in b]
    assert len({tuple(c["ids"]) for c in a}) > 1
    k1 = json.loads(run_optforge(*base, "--top-k", 1, "--seed", 9).stdout)["choices"][0]
    assert k1["ids"] == greedy["ids"]
