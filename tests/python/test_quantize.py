"""--quantize int8 (weight-only, symmetric per output channel; docs/inference.md) against
transformers.

Exactness: optforge's logits with --quantize int8 (and --kv-dtype f32) equal transformers' f32
logits on a copy of the model whose matmul weights are replaced by the dequantized q * scale of a
numpy implementation of the documented scheme (quant_reference.py), within test_model.py's f32
bound 1e-4: the quantization itself is then exactly the documented one.

Quality: against the unquantized f32 model in transformers, over 64 sequences x 128 positions of
random tokens, on a pre-LN model and a 350m-style one (post-LN, project_in/out): the mean
KL(p_f32 || p_int8) over all positions, and the share of positions whose top-1 token agrees.
Bounds: mean KL < 5e-4 nats and top-1 agreement > 95%, with the embedding as stored and with
--quantize-embeddings. Measured (`pytest -s` prints them): pre-LN KL 5.0e-5 / 6.4e-5 (with the
embedding), top-1 97.6% / 97.1%; 350m-style KL 1.6e-5 / 1.8e-5, top-1 98.6% / 98.2%. These random
models have near-uniform weights (no outlier channels), so int8 per channel loses little; their
next-token distributions are flat, so top-1 flips at near-ties make up most of the disagreement.
A broken scale or rounding moves KL by orders of magnitude.
"""
import json

import numpy as np
import pytest
import torch
from transformers import OPTForCausalLM

from conftest import assert_clean_error, assert_usage_error, run_optforge
from hf_reference import check_greedy_prompts, hf_logits, max_diff, our_logits, random_opt
from quant_reference import dequantized_model, is_matmul, quantize_int8

TOL = 1e-4
VOCAB = 1003
N_SEQ, SEQ_LEN = 64, 128
ARCHS = {
    "pre_ln": dict(hidden_size=52, num_attention_heads=4, ffn_dim=100, num_hidden_layers=3, word_embed_proj_dim=52,
                   do_layer_norm_before=True),
    "post_ln_350m": dict(hidden_size=64, num_attention_heads=4, ffn_dim=256, num_hidden_layers=3,
                         word_embed_proj_dim=40, do_layer_norm_before=False),
}
KL_BOUND = {False: 5e-4, True: 5e-4}  # keyed by --quantize-embeddings
TOP1_BOUND = {False: 0.95, True: 0.95}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """arch -> (f32 HF model, saved safetensors folder)"""
    out = {}
    for arch, cfg in ARCHS.items():
        model = random_opt(21, vocab_size=VOCAB, max_position_embeddings=SEQ_LEN + 8, dropout=0.0,
                           attention_dropout=0.0, init_std=0.1, pad_token_id=1, bos_token_id=2, eos_token_id=2, **cfg)
        path = tmp_path_factory.mktemp(arch) / "st"
        model.save_pretrained(path, safe_serialization=True)
        out[arch] = (model, path)
    return out


def sequences(n, length, seed):
    g = torch.Generator().manual_seed(seed)
    return [[2] + torch.randint(3, VOCAB, (length - 1,), generator=g).tolist() for _ in range(n)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("embeddings", [False, True])
def test_logits_equal_transformers_on_dequantized_weights(models, arch, embeddings, tmp_path):
    model, path = models[arch]
    ref_model = dequantized_model(model, embeddings)
    seqs = [s[:n] for s, n in zip(sequences(3, 40, seed=3), (40, 17, 1))]
    extra = ["--quantize", "int8"] + (["--quantize-embeddings"] if embeddings else [])
    ours = our_logits(path, seqs, tmp_path, *extra)
    err = max(max_diff(ours[b, :len(s)], hf_logits(ref_model, s)) for b, s in enumerate(seqs))
    print(f"\n{arch} int8{' +embeddings' if embeddings else ''}: max |logit - transformers(q*scale)| = {err:.2e}")
    assert err < TOL
    # and the quantization is not a no-op: the f32 model's logits are further away than the bound
    assert max(max_diff(ours[b, :len(s)], hf_logits(model, s)) for b, s in enumerate(seqs)) > 10 * TOL


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generate_equals_transformers_on_dequantized_weights(models, arch):
    model, path = models[arch]
    ref_model = dequantized_model(model)
    runs = []
    for prompt in sequences(2, 5, seed=4):
        proc = run_optforge("generate", path, "--prompt-ids", ",".join(map(str, prompt)), "--temperature", 0,
                            "--max-tokens", 24, "--ignore-eos", "--json", "--kv-dtype", "f32", "--quantize", "int8")
        runs.append((prompt, json.loads(proc.stdout)["choices"][0]["ids"]))
    check_greedy_prompts(ref_model, runs, 24, TOL)


def kl_and_top1(ref_logits, our_logits):
    """Mean KL(softmax(ref) || softmax(ours)) in nats and top-1 agreement, over all rows."""
    ref = torch.from_numpy(ref_logits).double().log_softmax(-1)
    ours = torch.from_numpy(our_logits).double().log_softmax(-1)
    kl = (ref.exp() * (ref - ours)).sum(-1)
    return float(kl.mean()), float((ref.argmax(-1) == ours.argmax(-1)).double().mean())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("embeddings", [False, True])
def test_kl_and_top1_against_the_f32_model(models, arch, embeddings, tmp_path):
    model, path = models[arch]
    seqs = sequences(N_SEQ, SEQ_LEN, seed=7)
    extra = ["--quantize", "int8"] + (["--quantize-embeddings"] if embeddings else [])
    ours = our_logits(path, seqs, tmp_path, *extra)
    with torch.no_grad():
        ref = model(torch.tensor(seqs)).logits.numpy()
    assert ours.shape == ref.shape == (N_SEQ, SEQ_LEN, VOCAB)
    kl, top1 = kl_and_top1(ref.reshape(-1, VOCAB), ours.reshape(-1, VOCAB))
    print(f"\n{arch} int8{' +embeddings' if embeddings else ''} vs transformers f32, {N_SEQ}x{SEQ_LEN} positions: "
          f"mean KL {kl:.2e} nats (bound {KL_BOUND[embeddings]:.0e}), top-1 agreement {top1:.4f} "
          f"(bound {TOP1_BOUND[embeddings]})")
    assert kl < KL_BOUND[embeddings]
    assert top1 > TOP1_BOUND[embeddings]


def test_unknown_quantization_is_a_usage_error(models):
    _, path = models["pre_ln"]
    proc = run_optforge("score", path, "-", "--ids", "--quantize", "int3", input="[2, 5]\n", check=False)
    assert "int3" in assert_usage_error(proc, "--quantize")


def test_quantize_embeddings_needs_int8(models):
    _, path = models["pre_ln"]
    proc = run_optforge("generate", path, "--prompt-ids", "2", "--quantize", "none", "--quantize-embeddings",
                        check=False)
    assert_clean_error(proc, "--quantize-embeddings", "--quantize int8")


def test_non_finite_weight_is_refused_naming_the_tensor(models, tmp_path):
    model, _ = models["pre_ln"]
    broken = dequantized_model(model)  # any copy
    with torch.no_grad():
        broken.model.decoder.layers[1].fc2.weight[3, 5] = float("inf")
    broken.save_pretrained(tmp_path / "st", safe_serialization=True)
    proc = run_optforge("generate", tmp_path / "st", "--prompt-ids", "2", "--quantize", "int8", check=False)
    assert_clean_error(proc, "model.decoder.layers.1.fc2.weight", "row 3", "non-finite")


# --- the stored layout: convert --quantize int8 (docs/formats.md) ---

def convert_int8(src, out, *extra):
    run_optforge("convert", src, "-o", out, "--to", "hf", "--quantize", "int8", *extra)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_convert_stores_the_documented_scheme_bit_for_bit(models, arch, tmp_path):
    """I8 weights and F32 scales equal numpy's scheme exactly; every other tensor is the source's
    bytes; the header's metadata names the scheme. Read with the safetensors package."""
    from safetensors import safe_open
    from safetensors.numpy import load_file
    _, path = models[arch]
    out = convert_int8(path, tmp_path / "q8")
    src = load_file(path / "model.safetensors")
    got = load_file(out / "model.safetensors")
    with safe_open(str(out / "model.safetensors"), "np") as f:
        assert f.metadata()["optforge_quantization"] == "int8-per-channel-symmetric"
    matmul = [n for n in src if is_matmul(n)]
    assert len(matmul) == 6 * 3 + (2 if arch == "post_ln_350m" else 0)
    for name, w in src.items():
        if name == "lm_head.weight":
            continue  # tied: not stored by either
        if is_matmul(name):
            q, scale = quantize_int8(w)
            assert got[name].dtype == np.int8 and got[name].shape == w.shape, name
            assert got[name + "_scale"].dtype == np.float32 and got[name + "_scale"].shape == (w.shape[0],), name
            assert np.array_equal(got[name], q), name
            assert got[name + "_scale"].tobytes() == scale.tobytes(), name
        else:
            assert got[name].dtype == w.dtype and got[name].tobytes() == w.tobytes(), name
    assert set(got) == {n for n in src if n != "lm_head.weight"} | {n + "_scale" for n in matmul}


@pytest.mark.parametrize("arch", ARCHS)
def test_stored_int8_runs_identically_to_load_time_quantization(models, arch, tmp_path):
    _, path = models[arch]
    out = convert_int8(path, tmp_path / "q8")
    seqs = sequences(3, 30, seed=9)
    for d in "abc":
        (tmp_path / d).mkdir()
    loaded = our_logits(path, seqs, tmp_path / "a", "--quantize", "int8")
    stored = our_logits(out, seqs, tmp_path / "b")  # used as stored, no option needed
    again = our_logits(out, seqs, tmp_path / "c", "--quantize", "int8")  # already int8: a no-op
    assert np.array_equal(loaded, stored) and np.array_equal(loaded, again)


def test_convert_int8_from_f16_and_to_a_bare_safetensors(models, tmp_path):
    """An f16 source is quantized from its f16 values; --to safetensors carries the scales and the
    metadata too, and score reads it."""
    from safetensors.numpy import load_file
    model, _ = models["pre_ln"]
    model.half().save_pretrained(tmp_path / "f16", safe_serialization=True)
    model.float()
    run_optforge("convert", tmp_path / "f16", "-o", tmp_path / "q.safetensors", "--to", "safetensors",
                 "--quantize", "int8")
    src, got = load_file(tmp_path / "f16" / "model.safetensors"), load_file(tmp_path / "q.safetensors")
    name = "model.decoder.layers.2.fc1.weight"
    q, scale = quantize_int8(src[name])
    assert np.array_equal(got[name], q) and got[name + "_scale"].tobytes() == scale.tobytes()
    assert got["model.decoder.embed_tokens.weight"].dtype == np.float16
    seqs = sequences(2, 12, seed=10)
    ref = dequantized_model(OPTForCausalLM.from_pretrained(tmp_path / "f16", torch_dtype=torch.float32).eval())
    ours = our_logits(tmp_path / "q.safetensors", seqs, tmp_path)
    assert max(max_diff(ours[b, :len(s)], hf_logits(ref, s)) for b, s in enumerate(seqs)) < TOL


def test_inspect_shows_int8_tensors_and_scales(models, tmp_path):
    _, path = models["pre_ln"]
    out = convert_int8(path, tmp_path / "q8")
    text = run_optforge("inspect", out / "model.safetensors").stdout
    assert "model.decoder.layers.0.fc1.weight" in text and "model.decoder.layers.0.fc1.weight_scale" in text
    info = json.loads(run_optforge("inspect", "--json", out / "model.safetensors").stdout)
    dtypes = {t["name"]: t["dtype"] for t in info["tensors"]}
    assert dtypes["model.decoder.layers.0.fc1.weight"] in ("i8", "I8", "int8")
    assert dtypes["model.decoder.layers.0.fc1.weight_scale"] in ("f32", "F32", "float32")
    folder = run_optforge("inspect", out).stdout  # the model view: roles, with the scheme named
    assert "int8-per-channel-symmetric" in folder and "decoder.layers.0.fc1.weight_scale  f32  [100]" in folder


def assert_damaged_copy_refused(folder, dst, edit, mention):
    """A copy of the quantized HF `folder` at `dst` whose model.safetensors has edit(tensors,
    metadata) applied (dicts, edited in place); `score` on it must be refused cleanly, naming
    the folder and `mention`."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    dst.mkdir()
    for f in folder.iterdir():
        if f.name != "model.safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        md = f.metadata()
    d = load_file(folder / "model.safetensors")
    edit(d, md)
    save_file(d, str(dst / "model.safetensors"), metadata=md)
    proc = run_optforge("score", dst, "-", "--ids", input="[2, 5, 6]\n", check=False)
    assert_clean_error(proc, str(dst), mention)


@pytest.mark.parametrize("case,mention", [
    ("missing", "model.decoder.layers.1.fc2.weight"),
    ("shape", "model.decoder.layers.1.fc2.weight_scale"),
    ("dtype", "model.decoder.layers.1.fc2.weight_scale"),
    ("stray", "model.decoder.layers.1.fc2.weight_scale"),
    ("scheme", "int4-grouped"),
    ("nan", "model.decoder.layers.1.fc2.weight_scale"),
    ("negative", "model.decoder.layers.1.fc2.weight_scale"),
])
def test_bad_scales_are_refused_naming_file_and_tensor(models, case, mention, tmp_path):
    _, path = models["pre_ln"]
    out = convert_int8(path, tmp_path / "q8")
    name = "model.decoder.layers.1.fc2.weight"

    def edit(d, md):
        if case == "scheme":
            md["optforge_quantization"] = "int4-grouped"
        elif case == "missing":
            del d[name + "_scale"]
        elif case == "shape":
            d[name + "_scale"] = d[name + "_scale"][:-1].copy()
        elif case == "dtype":
            d[name + "_scale"] = d[name + "_scale"].astype(np.float16)
        elif case in ("nan", "negative"):  # a damaged scale: NaN, or a sign flipped
            d[name + "_scale"][7] = np.nan if case == "nan" else -d[name + "_scale"][7]
        else:  # a float weight with a scale beside it
            d[name] = (d[name].astype(np.float32) * d[name + "_scale"][:, None]).astype(np.float32)
    assert_damaged_copy_refused(out, tmp_path / "bad", edit, mention)


def test_int8_output_other_than_safetensors_is_refused(models, tmp_path):
    _, path = models["pre_ln"]
    proc = run_optforge("convert", path, "-o", tmp_path / "m.pt", "--to", "metaseq", "--quantize", "int8",
                        check=False)
    assert_clean_error(proc, "--quantize int8", "safetensors")
    assert not (tmp_path / "m.pt").exists()
    out = convert_int8(path, tmp_path / "q8")
    proc = run_optforge("convert", out, "-o", tmp_path / "alpa", "--to", "alpa", check=False)
    assert_clean_error(proc, "int8-quantized input")
    # File to file: a .pt/.bin copy would drop the metadata that marks the scheme, and --dtype
    # would cast the f32 scales; a plain .safetensors copy keeps both.
    for target, extra in (("m.bin", []), ("m.pt", []), ("m.safetensors", ["--dtype", "f16"])):
        proc = run_optforge("convert", out / "model.safetensors", tmp_path / target, *extra, check=False)
        assert_clean_error(proc, str(out / "model.safetensors"), "int8-per-channel-symmetric", ".safetensors")
        assert not (tmp_path / target).exists()
    run_optforge("convert", out / "model.safetensors", tmp_path / "copy.safetensors")
    assert (tmp_path / "copy.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_serve_quantize_int8_completes_as_transformers_on_dequantized_weights(models):
    """serve --quantize int8: a greedy completion's text is transformers' greedy continuation on
    the dequantized weights, decoded by transformers' OPT tokenizer."""
    from serve_util import complete, serve
    from tokenizer_reference import opt_slow_tokenizer
    model, path = models["pre_ln"]
    ref_model = dequantized_model(model)
    prompt = sequences(1, 6, seed=12)[0]
    with torch.no_grad():
        out = ref_model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False, min_new_tokens=12)
    want = opt_slow_tokenizer().decode(out[0, len(prompt):].tolist())
    with serve(path, "--quantize", "int8", "--kv-dtype", "f32") as server:
        got = complete(server, prompt, max_tokens=12)
    assert got == want
