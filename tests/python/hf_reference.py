"""What the model tests compare against, shared: small random OPT models built by transformers,
transformers' logits (one shot and through its KV cache) and greedy tokens, and optforge's logits
from `score --dump-logits`."""
import json

import numpy as np
import pytest
import torch
from transformers import OPTConfig, OPTForCausalLM

from conftest import run_optforge


def random_opt(seed=0, **config):
    """OPTForCausalLM of OPTConfig(**config), f32, eval mode. HF's init leaves layer norms at 1/0
    and biases at 0; they are randomised so every term counts."""
    torch.manual_seed(seed)
    model = OPTForCausalLM(OPTConfig(**config)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def hf_cached_logits(model, seq, prefill):
    """Prefill `prefill` tokens, then one token at a time through transformers' KV cache."""
    with torch.no_grad():
        out = model(torch.tensor([seq[:prefill]]), use_cache=True)
        ref, past = [out.logits[0]], out.past_key_values
        for t in seq[prefill:]:
            out = model(torch.tensor([[t]]), past_key_values=past, use_cache=True)
            ref.append(out.logits[0])
            past = out.past_key_values
    return torch.cat(ref).numpy()


def our_logits(path, seqs, tmp_path, *extra):
    ids_file = tmp_path / "ids.jsonl"
    ids_file.write_text("".join(json.dumps(s) + "\n" for s in seqs))
    out = tmp_path / "logits.npy"
    # f32 KV cache: these tests hold optforge to transformers' f32 within 1e-4 (test_kv_dtype.py
    # checks the default f16 cache against its own bound).
    run_optforge("score", path, ids_file, "--ids", "--json", "--dump-logits", out, "--kv-dtype", "f32", *extra)
    return np.load(out)


def max_diff(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def check_greedy(model, prompt, ours, steps, tol):
    """transformers' greedy tokens after `prompt` equal `ours` (`steps` ids). Only at a near-tie
    (top two logits within `tol`) may ours take the other token; the comparison ends there, as
    everything after depends on which was taken. Returns the steps compared (`steps` unless a
    near-tie came first); any other difference fails."""
    ids, ref = list(prompt), []
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
        for _ in range(steps):
            logits = out.logits[0, -1]
            top2 = torch.topk(logits, 2).values
            nxt = int(torch.argmax(logits))
            if len(ref) < len(ours) and ours[len(ref)] != nxt:
                assert float(top2[0] - top2[1]) < tol, (prompt, len(ref))
                return len(ref)
            ref.append(nxt)
            out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
    assert ours == ref
    return steps


def check_greedy_prompts(model, runs, steps, tol):
    """check_greedy for each (prompt, our ids) in `runs`: a near-tie ends the comparison of that
    prompt only (and is printed); the test is skipped only if every prompt met one, never
    passed with nothing compared."""
    compared = [check_greedy(model, prompt, ours, steps, tol) for prompt, ours in runs]
    ties = [(len(prompt), n) for (prompt, _), n in zip(runs, compared) if n < steps]
    for length, n in ties:
        print(f"near-tie after {n} of {steps} greedy steps (prompt of {length} tokens): compared up to it")
    if len(ties) == len(runs):
        pytest.skip(f"every prompt met a near-tie before {steps} steps (steps compared: {compared})")


def save_small_opt(seed, path, vocab_size, context):
    """A random pre-LN OPT (hidden 64, 4 heads, 2 layers) saved as safetensors at `path`; returns
    the model."""
    m = random_opt(seed, vocab_size=vocab_size, max_position_embeddings=context, hidden_size=64,
                   num_attention_heads=4, ffn_dim=128, num_hidden_layers=2, word_embed_proj_dim=64,
                   do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, init_std=0.1, pad_token_id=1,
                   bos_token_id=2, eos_token_id=2)
    m.save_pretrained(path, safe_serialization=True)
    return m


def greedy_plain_ids(model, prompt, steps, tol):
    """transformers' greedy continuation over ids >= 3 (a server asked with logit_bias -100 on
    <s>, <pad>, </s>) with its KV cache: the ids and their log-softmax values. Asserts that no step
    is a near-tie (top two logits within `tol`), where rounding could pick either."""
    ids, lps = list(prompt), []
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
        for _ in range(steps):
            logits = out.logits[0, -1]
            nxt = 3 + int(torch.argmax(logits[3:]))
            top2 = torch.topk(logits[3:], 2).values
            assert float(top2[0] - top2[1]) > tol, "a near-tie: pick another seed"
            lps.append(float(torch.log_softmax(logits, -1)[nxt]))
            ids.append(nxt)
            out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
    return ids[len(prompt):], lps

