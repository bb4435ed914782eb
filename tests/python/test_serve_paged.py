"""The paged KV cache under pressure: `optforge serve` with a pool of a few blocks
(--kv-cache-tokens 128: 8 blocks of 16 tokens) and 12 concurrent requests must preempt running
requests (their blocks freed, recomputed later) and still answer exactly what a server with a
large pool answers, and what transformers' greedy continuation is.

The model is a random OPT built by transformers (f32, saved as safetensors), served with an f32
KV cache. Prompts are token ids; logit_bias -100 keeps </s>, <pad> and <s> out of the output so
the text is plain BPE text (transformers' GPT2Tokenizer.decode of the ids) and the reference is
argmax over the other ids. Greedy text must be identical; token logprobs (the model's own
log-softmax) within 1e-4 of transformers' and within 1e-5 between the two pools (a preempted
sequence is recomputed through the prefill kernels: rounding only). Seeded sampling must give
identical text with and without preemption (each sample keeps its RNG). A prompt that could never
fit the pool is a 400 naming the limit.
"""
import concurrent.futures

import numpy as np
import pytest
import torch
from transformers import GPT2Tokenizer

from hf_reference import greedy_plain_ids, save_small_opt
from serve_util import call, make_tiny_model, metric, serve, wait_until
from tokenizer_reference import MERGES, VOCAB

V, CONTEXT, MAX_TOKENS, TOL = 1003, 256, 24, 1e-4
POOL = 128  # tokens: 8 blocks; one request needs at most ceil((60 + 24) / 16) = 6
BAN = {"0": -100, "1": -100, "2": -100}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("paged") / "opt-paged"
    return save_small_opt(31, path, V, CONTEXT), path


def prompts():
    g = torch.Generator().manual_seed(5)
    out = []
    for i in range(12):
        n = 20 + (i * 7) % 41  # 20 .. 60 tokens
        out.append([2] + torch.randint(3, V, (n - 1,), generator=g).tolist())
    return out


def hf_greedy(m, prompt):
    return greedy_plain_ids(m, prompt, MAX_TOKENS, TOL)


def run_all(server, bodies):
    def one(body):
        status, r = call("POST", server.url + "/v1/completions", {"model": server.model_id, **body}, timeout=300)
        assert status == 200, r
        return r

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def greedy_bodies():
    return [{"prompt": p, "max_tokens": MAX_TOKENS, "temperature": 0, "logprobs": 1, "logit_bias": BAN}
            for p in prompts()]


def sampled_bodies():
    # n = 2 samples of 24 + 24 tokens: 2 x 3 blocks, so one request alone fits the pool.
    return [{"prompt": p[:24], "max_tokens": MAX_TOKENS, "temperature": 1.0, "seed": 100 + i, "n": 2,
             "ignore_eos": True} for i, p in enumerate(prompts()[:8])]


@pytest.fixture(scope="module")
def answers(model):
    _, path = model
    out = {}
    for name, args in (("tiny", ["--kv-cache-tokens", POOL]), ("large", [])):
        with serve(path, "--kv-dtype", "f32", "--max-batch", 16, *args) as s:
            greedy = run_all(s, greedy_bodies())
            sampled = run_all(s, sampled_bodies())
            # The gauges are published after the last answer went out.
            assert wait_until(lambda: metric(call("GET", s.url + "/metrics")[1], "optforge_batch_size") == 0)
            out[name] = (greedy, sampled, call("GET", s.url + "/metrics")[1])
    return out


def test_tiny_pool_preempts(answers):
    m = answers["tiny"][2]
    assert metric(m, "optforge_kv_cache_capacity_tokens") == POOL
    assert metric(m, "optforge_kv_cache_used_blocks") + metric(m, "optforge_kv_cache_free_blocks") == POOL // 16
    print(f"\npreemptions with a {POOL}-token pool: {metric(m, 'optforge_num_preemptions_total'):.0f}")
    assert metric(m, "optforge_num_preemptions_total") > 0
    assert metric(m, "optforge_kv_cache_used_blocks") == 0  # everything given back
    assert metric(answers["large"][2], "optforge_num_preemptions_total") == 0


def test_greedy_equals_large_pool_and_transformers(model, answers):
    m, _ = model
    tok = GPT2Tokenizer(VOCAB, MERGES)
    for p, tiny, large in zip(prompts(), answers["tiny"][0], answers["large"][0]):
        ref_ids, ref_lps = hf_greedy(m, p)
        t, l = tiny["choices"][0], large["choices"][0]
        assert t["text"] == l["text"] == tok.decode(ref_ids), len(p)
        assert "".join(t["logprobs"]["tokens"]) == t["text"]
        assert len(t["logprobs"]["token_logprobs"]) == MAX_TOKENS
        tl, ll = np.array(t["logprobs"]["token_logprobs"]), np.array(l["logprobs"]["token_logprobs"])
        assert np.abs(tl - np.array(ref_lps)).max() < TOL
        assert np.abs(tl - ll).max() < 1e-5


def test_seeded_sampling_survives_preemption(answers):
    for tiny, large in zip(answers["tiny"][1], answers["large"][1]):
        assert [c["text"] for c in tiny["choices"]] == [c["text"] for c in large["choices"]]
        assert tiny["choices"][0]["text"] != tiny["choices"][1]["text"]  # the two samples differ


def test_prompt_beyond_the_pool_is_refused(model):
    _, path = model
    with serve(path, "--kv-cache-tokens", 64) as s:
        status, body = call("POST", s.url + "/v1/completions",
                            {"model": s.model_id, "prompt": [2] + [7] * 99, "max_tokens": 1})
        assert status == 400, body
        assert "--kv-cache-tokens 64" in body["error"]["message"] and "100 tokens" in body["error"]["message"]
        # The prompt fits, but it could never finish alone: refused too, not left waiting.
        status, body = call("POST", s.url + "/v1/completions",
                            {"model": s.model_id, "prompt": [2] + [7] * 39, "max_tokens": 30})
        assert status == 400 and "--kv-cache-tokens 64" in body["error"]["message"], body
        status, body = call("POST", s.url + "/v1/completions",
                            {"model": s.model_id, "prompt": [2] + [7] * 39, "max_tokens": 20})
        assert status == 200, body


def vm_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_memory_is_the_pool_not_sequences_times_context(tmp_path):
    """The cache reserves its pool once (address space, VmSize), whatever --max-batch is: 64
    sequences of the 2048-token context would be 128 MiB of f32 cache for this model (2 layers x
    64 wide: 1 KiB per token), the pools here are 1 MiB and 64 MiB. Resident memory (VmRSS) only
    grows as blocks are used, so at start it stays far below a large pool."""
    path = make_tiny_model(tmp_path / "opt-mem.pt")
    kib = {}
    for batch, pool in ((4, 1024), (64, 1024), (4, 65536)):
        with serve(path, "--kv-dtype", "f32", "--max-batch", batch, "--kv-cache-tokens", pool) as s:
            kib[batch, pool] = vm_kib(s.proc.pid, "VmSize"), vm_kib(s.proc.pid, "VmRSS")
    pool_kib = (65536 - 1024) * 1024 // 1024  # 1 KiB per token
    grown = kib[4, 65536][0] - kib[4, 1024][0]
    assert abs(grown - pool_kib) < 4096, (grown, pool_kib)
    assert abs(kib[64, 1024][0] - kib[4, 1024][0]) < 4096, kib  # not sequences x context
    assert kib[4, 65536][1] - kib[4, 1024][1] < pool_kib // 4, kib  # untouched until used
