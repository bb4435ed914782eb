"""Automatic prefix caching in `optforge serve`: 16 requests sharing a 256-token prefix (16 full
KV cache blocks) with distinct endings. The first request runs alone and leaves the prefix
cached; the other 15, sent together, must find it (prefix cache hits: exactly 15 x 256 tokens)
and answer what a server with --no-prefix-caching answers and what transformers' greedy
continuation is.

Model: a random OPT built by transformers (f32, safetensors), served with an f32 KV cache.
Prompts are token ids; logit_bias -100 keeps </s>, <pad> and <s> out, so the text is
transformers' GPT2Tokenizer.decode of the ids and the reference is argmax over the other ids.
Greedy text identical; token logprobs within 1e-4 of transformers' and within 1e-5 between the
two servers (the cached prefix was computed by another request's prefill: rounding only).
"""
import concurrent.futures

import numpy as np
import pytest
import torch
from transformers import GPT2Tokenizer

from hf_reference import greedy_plain_ids, save_small_opt
from serve_util import call, metric, serve, wait_until
from tokenizer_reference import MERGES, VOCAB

V, PREFIX, MAX_TOKENS, TOL = 1003, 256, 16, 1e-4
BAN = {"0": -100, "1": -100, "2": -100}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefix") / "opt-prefix"
    return save_small_opt(41, path, V, 512), path


def prompts():
    g = torch.Generator().manual_seed(9)
    prefix = [2] + torch.randint(3, V, (PREFIX - 1,), generator=g).tolist()
    return [prefix + torch.randint(3, V, (5 + i,), generator=g).tolist() for i in range(16)]


def hf_greedy(m, prompt):
    return greedy_plain_ids(m, prompt, MAX_TOKENS, TOL)


def ask(server, prompt):
    body = {"model": server.model_id, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0, "logprobs": 1,
            "logit_bias": BAN}
    status, r = call("POST", server.url + "/v1/completions", body, timeout=300)
    assert status == 200, r
    return r["choices"][0]


@pytest.fixture(scope="module")
def answers(model):
    _, path = model
    out = {}
    for name, args in (("cached", []), ("uncached", ["--no-prefix-caching"])):
        with serve(path, "--kv-dtype", "f32", "--max-batch", 16, *args) as s:
            ps = prompts()
            first = ask(s, ps[0])  # alone: leaves the prefix cached
            with concurrent.futures.ThreadPoolExecutor(15) as pool:
                rest = list(pool.map(lambda p: ask(s, p), ps[1:]))
            assert wait_until(lambda: metric(call("GET", s.url + "/metrics")[1], "optforge_batch_size") == 0)
            out[name] = ([first] + rest, call("GET", s.url + "/metrics")[1])
    return out


def test_hit_counters(answers):
    cached, uncached = answers["cached"][1], answers["uncached"][1]
    queried = sum(len(p) for p in prompts())
    assert metric(cached, "optforge_prefix_cache_queries_total") == queried
    assert metric(cached, "optforge_prefix_cache_hits_total") == 15 * PREFIX
    assert metric(uncached, "optforge_prefix_cache_queries_total") == 0
    assert metric(uncached, "optforge_prefix_cache_hits_total") == 0
    # Computed prompt tokens are counted either way.
    assert metric(cached, "optforge_prompt_tokens_total") == metric(uncached, "optforge_prompt_tokens_total")


def test_same_greedy_text_and_logprobs_as_without_and_as_transformers(model, answers):
    m, _ = model
    tok = GPT2Tokenizer(VOCAB, MERGES)
    for p, c, u in zip(prompts(), answers["cached"][0], answers["uncached"][0]):
        ref_ids, ref_lps = hf_greedy(m, p)
        assert c["text"] == u["text"] == tok.decode(ref_ids), len(p)
        cl, ul = np.array(c["logprobs"]["token_logprobs"]), np.array(u["logprobs"]["token_logprobs"])
        assert len(cl) == MAX_TOKENS
        assert np.abs(cl - np.array(ref_lps)).max() < TOL
        assert np.abs(cl - ul).max() < 1e-5
