"""Beam search (`generate --beams`, and use_beam_search on /v1/completions) against transformers.

Without stop sequences the sequences must be exactly transformers' `generate(num_beams=B,
num_return_sequences=n, length_penalty=..., early_stopping=..., do_sample=False)` ones, best
first, with transformers' sequences_scores within 1e-4, on two random models built by
transformers (pre-LN, and 350m-style: post-LN with project_in/out). Stop sequences are this
project's extension, so their reference is `reference_beams` below: transformers' BeamSearchScorer
rule written again in Python over transformers' own log-softmax, where a candidate whose decoded
text contains a stop string ends its beam as </s> does. The test first checks that this reference
gives transformers' generate() output without stops, so it cannot drift from transformers.
The models' end token is one their beams often pick (see build), so beams end at many lengths and
length_penalty and early_stopping change the results. The server runs are checked the same way,
with the beams' scores recomputed from the logprobs it reports."""
import json

import openai
import pytest
import torch

from chat_reference import VOCAB, greedy, label_to_id, log_softmax, prompt_ids, text_of, token_bytes
from conftest import run_optforge
from hf_reference import random_opt
from serve_util import call, metric, serve

TOL = 1e-4
PROMPTS = ["The weather today", "Once upon a time there was", "I like"]
MAX_TOKENS = 8


def build(path, pre_ln, seed):
    proj = {} if pre_ln else {"word_embed_proj_dim": 16}  # 350m: project_in/out around the layers
    model = random_opt(seed, vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=128, do_layer_norm_before=pre_ln,
                       dropout=0.0, attention_dropout=0.0, init_std=0.2, pad_token_id=1, bos_token_id=2,
                       eos_token_id=2, **proj)
    # A random model almost never picks </s>, so every beam would run to max_tokens with one
    # length and neither length_penalty nor early_stopping would change anything. The end token
    # becomes the token its beams generate most often instead, so beams end at many lengths.
    counts = {}
    with torch.no_grad():
        for text in PROMPTS:
            out = model.generate(torch.tensor([prompt_ids(text)]), num_beams=4, num_return_sequences=4,
                                 do_sample=False, max_new_tokens=MAX_TOKENS)
            for t in out[:, len(prompt_ids(text)):].flatten().tolist():
                counts[t] = counts.get(t, 0) + (t > 3)
    eos = max(counts, key=counts.get)
    model.config.eos_token_id = model.generation_config.eos_token_id = eos
    model.save_pretrained(path, safe_serialization=True)
    return model


@pytest.fixture(scope="module", params=["pre_ln", "350m_style"])
def hf(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("beam") / f"opt-beam-{request.param}"
    return build(path, request.param == "pre_ln", seed=11), path


@pytest.fixture(scope="module")
def table():
    return token_bytes()


def hf_beams(model, prompt, beams, n, length_penalty, early_stopping, max_tokens=MAX_TOKENS):
    """transformers' beams: [(generated ids, ended by </s>, sequences_score)], best first."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), num_beams=beams, num_return_sequences=n,
                             length_penalty=length_penalty, early_stopping=early_stopping, do_sample=False,
                             max_new_tokens=max_tokens, output_scores=True, return_dict_in_generate=True)
    result, eos = [], model.config.eos_token_id
    for seq, score in zip(out.sequences.tolist(), out.sequences_scores.tolist()):
        gen = seq[len(prompt):]
        ended = eos in gen
        ids = gen[:gen.index(eos)] if ended else gen
        assert all(t == 1 for t in gen[len(ids) + 1:]), gen  # after </s>: padding only
        result.append((ids, ended, score))
    return result


def reference_beams(model, prompt, beams, n, length_penalty, early_stopping, stops, table,
                    max_tokens=MAX_TOKENS):
    """transformers' BeamSearchScorer (4.40) rule in Python on transformers' log-softmax, a
    candidate whose text contains a stop string ending its beam like </s> (its token kept)."""
    def stops_in(ids):
        return any(s in text_of(ids, table) for s in stops)

    hyps, eos = [], model.config.eos_token_id  # hyps: (score, ids, ended)

    def add(ids, total, length, ended):
        score = total / length ** length_penalty
        if len(hyps) < beams or score > min(h[0] for h in hyps):
            hyps.append((score, ids, ended))
            if len(hyps) > beams:
                hyps.remove(min(hyps, key=lambda h: h[0]))

    running = [([], torch.tensor(0.0))]
    with torch.no_grad():
        for length in range(1, max_tokens + 1):
            cands = []
            for b, (ids, score) in enumerate(running):
                lp = torch.log_softmax(model(torch.tensor([prompt + ids])).logits[0, -1], -1)
                top = torch.topk(lp, 4 * beams)
                cands += [(score + v, b, int(t)) for v, t in zip(top.values, top.indices)]
            cands.sort(key=lambda c: -float(c[0]))
            nxt = []
            for rank, (total, b, tok) in enumerate(cands):
                ids = running[b][0] + [tok]
                if tok == eos or stops_in(ids):
                    if rank < beams:
                        add(ids[:-1] if tok == eos else ids, float(total), length, True)
                    continue
                nxt.append((ids, total))
                if len(nxt) == beams:
                    break
            best = float(cands[0][0])
            if len(hyps) >= beams and (early_stopping or
                                       min(h[0] for h in hyps) >= best / length ** length_penalty):
                break
            running = nxt
            if length == max_tokens:
                for ids, total in running:
                    add(ids, float(total), length, False)
    hyps.sort(key=lambda h: -h[0])
    return [(ids, ended, score) for score, ids, ended in hyps[:n]]


def cli_beams(path, prompt, beams, n, length_penalty, early_stopping, stops=()):
    args = ["generate", path, "--prompt-ids", ",".join(map(str, prompt)), "--beams", beams, "--n", n,
            "--length-penalty", length_penalty, "--max-tokens", MAX_TOKENS, "--kv-dtype", "f32", "--json"]
    args += ["--early-stopping"] if early_stopping else []
    for s in stops:
        args += ["--stop", s]
    return json.loads(run_optforge(*args).stdout)["choices"]


CASES = [(3, 2, 1.0, False), (4, 4, 0.5, False), (4, 3, 2.0, False), (3, 3, 1.0, True)]


def test_beams_end_at_different_lengths(hf):
    """What makes length_penalty and early_stopping matter: beams that end before max_tokens."""
    lengths = {len(r[0]) for t in PROMPTS for r in hf_beams(hf[0], prompt_ids(t), 4, 4, 1.0, False) if r[1]}
    assert len(lengths) >= 2, lengths


@pytest.mark.parametrize("beams,n,length_penalty,early_stopping", CASES)
def test_cli_beams_are_transformers_beams(hf, table, beams, n, length_penalty, early_stopping):
    model, path = hf
    for text in PROMPTS:
        prompt = prompt_ids(text)
        ref = hf_beams(model, prompt, beams, n, length_penalty, early_stopping)
        ours = cli_beams(path, prompt, beams, n, length_penalty, early_stopping)
        assert [c["ids"] for c in ours] == [r[0] for r in ref], text
        assert [c["finish_reason"] for c in ours] == ["stop" if r[1] else "length" for r in ref]
        assert [c["text"] for c in ours] == [text_of(r[0], table) for r in ref]
        for c, r in zip(ours, ref):
            assert abs(c["score"] - r[2]) < TOL, (c["score"], r[2])


def test_reference_search_is_transformers_without_stops(hf, table):
    model, _ = hf
    for beams, n, length_penalty, early_stopping in CASES:
        for text in PROMPTS[:2]:
            prompt = prompt_ids(text)
            ref = hf_beams(model, prompt, beams, n, length_penalty, early_stopping)
            mine = reference_beams(model, prompt, beams, n, length_penalty, early_stopping, (), table)
            assert [m[0] for m in mine] == [r[0] for r in ref]
            assert all(abs(m[2] - r[2]) < TOL for m, r in zip(mine, ref))


def stops_for(model, prompt, table):
    """Stop strings that cut transformers' beams: a piece spanning the 2nd/3rd tokens of the
    longest beam without stops (so across a token boundary), and a single character of its text."""
    ids = max((r[0] for r in hf_beams(model, prompt, 4, 4, 1.0, False)), key=len)
    a, b = text_of(ids[:2], table), text_of(ids[:3], table)
    span = b[max(0, len(a) - 2):len(a) + 2]
    return [s for s in (span, b.strip()[-1:]) if s.strip()]


def test_cli_stop_strings_cut_beams_as_the_reference(hf, table):
    model, path = hf
    for text in PROMPTS:
        prompt = prompt_ids(text)
        stops = stops_for(model, prompt, table)
        assert stops
        ref = reference_beams(model, prompt, 4, 3, 1.0, False, stops, table)
        ours = cli_beams(path, prompt, 4, 3, 1.0, False, stops)
        assert [c["ids"] for c in ours] == [r[0] for r in ref], (text, stops)
        assert [c["text"] for c in ours] == [text_of(r[0], table, stops) for r in ref]
        assert [c["finish_reason"] for c in ours] == ["stop" if r[1] else "length" for r in ref]
        for c, r in zip(ours, ref):
            assert abs(c["score"] - r[2]) < TOL
            assert not any(s in c["text"] for s in stops)


# ---- the server: vLLM's use_beam_search on /v1/completions through the openai client

@pytest.fixture(scope="module")
def client(hf):
    with serve(hf[1], "--kv-dtype", "f32", "--max-batch", 8) as s:
        yield openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=120), s


@pytest.fixture(scope="module")
def labels(table):
    return label_to_id(table)


def served_beams(client, hf, beams, n, length_penalty, early_stopping, prompts=PROMPTS, **kw):
    return client.completions.create(
        model=hf[1].name, prompt=prompts, max_tokens=MAX_TOKENS, n=n, best_of=beams, logprobs=0,
        extra_body={"use_beam_search": True, "length_penalty": length_penalty, "early_stopping": early_stopping},
        **kw)


def check_served(out, refs, n, labels, length_penalty, table, stops=()):
    assert [c.index for c in out.choices] == list(range(len(refs) * n))
    for p, ref in enumerate(refs):
        for c, (ids, ended, score) in zip(out.choices[p * n:(p + 1) * n], ref):
            assert [labels[t] for t in c.logprobs.tokens] == ids
            assert c.text == text_of(ids, table, stops)
            assert c.finish_reason == ("stop" if ended else "length")
            # The beam's score from the logprobs it reports: </s>'s own logprob is not reported.
            if not ended or any(s in text_of(ids, table) for s in stops):
                total = sum(c.logprobs.token_logprobs)
                assert abs(total / max(1, len(ids)) ** length_penalty - score) < TOL


@pytest.mark.parametrize("beams,n,length_penalty,early_stopping", CASES)
def test_served_beams_are_transformers_beams(hf, client, labels, table, beams, n, length_penalty,
                                             early_stopping):
    out = served_beams(client[0], hf, beams, n, length_penalty, early_stopping)
    refs = [hf_beams(hf[0], prompt_ids(t), beams, n, length_penalty, early_stopping) for t in PROMPTS]
    check_served(out, refs, n, labels, length_penalty, table)
    assert out.usage.completion_tokens == sum(len(r[0]) for ref in refs for r in ref)


def test_served_stop_strings_cut_beams_as_the_reference(hf, client, labels, table):
    for text in PROMPTS:
        prompt = prompt_ids(text)
        stops = stops_for(hf[0], prompt, table)
        ref = reference_beams(hf[0], prompt, 4, 3, 1.0, False, stops, table)
        out = served_beams(client[0], hf, 4, 3, 1.0, False, prompts=[text], stop=stops)
        check_served(out, [ref], 3, labels, 1.0, table, stops)


@pytest.mark.parametrize("body,param", [
    ({"stream": True}, "stream"),
    ({"temperature": 0.7}, "temperature"),
    ({"top_p": 0.5}, "top_p"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"n": 3, "best_of": 2}, "best_of"),
    ({"n": 1, "best_of": 1}, "best_of"),
])
def test_served_beam_search_refuses_what_it_cannot_honour(hf, client, body, param):
    req = {"model": hf[1].name, "prompt": "Hello", "max_tokens": 4, "use_beam_search": True, "best_of": 2, **body}
    status, reply = call("POST", client[1].url + "/v1/completions", req)
    assert status == 400, reply
    assert reply["error"]["param"] == param


def test_beam_fields_without_beam_search_are_refused(hf, client):
    for extra in ({"length_penalty": 2.0}, {"early_stopping": True}):
        status, reply = call("POST", client[1].url + "/v1/completions",
                             {"model": hf[1].name, "prompt": "Hello", "max_tokens": 4, **extra})
        assert status == 400 and reply["error"]["param"] == next(iter(extra)), reply


def test_temperature_zero_is_accepted(hf, client, table):
    out = served_beams(client[0], hf, 3, 1, 1.0, False, prompts=[PROMPTS[0]], temperature=0)
    ref = hf_beams(hf[0], prompt_ids(PROMPTS[0]), 3, 1, 1.0, False)
    assert out.choices[0].text == text_of(ref[0][0], table)


def test_beams_and_sampling_requests_at_once(hf, client, table):
    """A beam request waits for the batch, runs alone, and the requests around it still get
    transformers' greedy texts."""
    from concurrent.futures import ThreadPoolExecutor
    model, path = hf
    greedy_kw = dict(model=path.name, max_tokens=24, temperature=0, stop=None)
    with ThreadPoolExecutor(4) as pool:
        before = [pool.submit(client[0].completions.create, prompt=t, **greedy_kw) for t in PROMPTS[:2]]
        beam = pool.submit(served_beams, client[0], hf, 4, 2, 1.0, False, prompts=[PROMPTS[2]])
        after = pool.submit(client[0].completions.create, prompt=PROMPTS[0], **greedy_kw)
        greedy_out = [f.result() for f in before + [after]]
        beam_out = beam.result()
    for out, text in zip(greedy_out, PROMPTS[:2] + PROMPTS[:1]):
        ids, _ = greedy(model, prompt_ids(text), 24, eos=model.config.eos_token_id)
        assert out.choices[0].text == text_of(ids, table)
    ref = hf_beams(model, prompt_ids(PROMPTS[2]), 4, 2, 1.0, False)
    assert [c.text for c in beam_out.choices] == [text_of(r[0], table) for r in ref]


def test_served_beams_echo_the_prompt_with_transformers_logprobs(hf, client, table):
    model, path = hf
    out = served_beams(client[0], hf, 3, 2, 1.0, False, prompts=[PROMPTS[1]], echo=True)
    prompt = prompt_ids(PROMPTS[1])
    lp = log_softmax(model, prompt)
    ref = hf_beams(model, prompt, 3, 2, 1.0, False)
    for c, r in zip(out.choices, ref):
        assert c.text == PROMPTS[1] + text_of(r[0], table)
        assert c.logprobs.token_logprobs[0] is None
        for i in range(1, len(prompt)):
            assert abs(c.logprobs.token_logprobs[i] - float(lp[i - 1, prompt[i]])) < TOL


def test_beams_that_cannot_fit_the_pool_are_refused(hf):
    with serve(hf[1], "--kv-dtype", "f32", "--max-batch", 8, "--kv-cache-tokens", 64) as s:
        req = {"model": hf[1].name, "prompt": "Hello", "max_tokens": 40, "use_beam_search": True}
        assert call("POST", s.url + "/v1/completions", {**req, "best_of": 1, "n": 1})[0] == 400
        status, reply = call("POST", s.url + "/v1/completions", {**req, "best_of": 4})
        assert status == 400 and "best_of x (prompt + max_tokens)" in reply["error"]["message"], reply
        status, reply = call("POST", s.url + "/v1/completions", {**req, "best_of": 2, "max_tokens": 8})
        assert status == 200, reply


@pytest.mark.parametrize("extra", [["--temperature", "0.5"], ["--top-p", "0.5"], ["--n", "5"]])
def test_cli_refuses_what_beams_cannot_honour(hf, extra):
    proc = run_optforge("generate", hf[1], "--prompt", "Hello", "--beams", 4, "--max-tokens", 4, *extra, check=False)
    assert proc.returncode != 0 and "error" in proc.stderr


def test_blocks_beams_leave_in_the_prefix_cache_hold_their_tokens(hf, client, labels, table):
    """Beams' full blocks stay in the prefix cache; a later prompt that starts with a beam's
    tokens reuses them and must still continue as transformers does."""
    model, path = hf
    text = "In the beginning the quick brown fox jumped over the lazy dog, and then it"
    prompt = prompt_ids(text)
    beams = client[0].completions.create(model=path.name, prompt=text, max_tokens=20, n=3, best_of=3, logprobs=0,
                                         extra_body={"use_beam_search": True, "ignore_eos": True})
    for c in beams.choices:
        ids = prompt + [labels[t] for t in c.logprobs.tokens]
        assert len(ids) >= 32  # two whole blocks: cached when the beam's sequence ended
        hits = metric(call("GET", client[1].url + "/metrics")[1], "optforge_prefix_cache_hits_total")
        out = client[0].completions.create(model=path.name, prompt=ids, max_tokens=6, temperature=0)
        assert metric(call("GET", client[1].url + "/metrics")[1], "optforge_prefix_cache_hits_total") >= hits + 32
        ref, _ = greedy(model, ids, 6, eos=model.config.eos_token_id)
        assert out.choices[0].text == text_of(ref, table)
