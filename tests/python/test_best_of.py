"""best_of on POST /v1/completions against transformers and the openai client.

best_of = k generates k samples per prompt exactly as n = k does (the same per-sample
generators), and returns the n with the highest cumulative logprob, best first. The tests take
the k candidates from an n = k request, recompute each one's cumulative logprob (the sum of
log_softmax over its generated tokens) with transformers, and check that best_of returns the n
best by transformers' numbers, that the logprobs it reports equal transformers' within 1e-4, and
that usage bills all k samples, as OpenAI does."""
import openai
import pytest

from chat_reference import build_model, label_to_id, log_softmax, prompt_ids, token_bytes
from serve_util import call, serve

TOL = 1e-4
PROMPTS = ["The weather today", "Once upon a time there"]
KW = dict(model="opt-best", max_tokens=6, temperature=1.0, seed=21)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    path = tmp_path_factory.mktemp("best_of") / "opt-best"
    return build_model(path, seed=7), path


@pytest.fixture(scope="module")
def server(hf):
    with serve(hf[1], "--kv-dtype", "f32", "--max-batch", 8) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def labels():
    return label_to_id(token_bytes())


def cumulative(model, prompt, tokens, labels):
    """transformers' cumulative logprob of the generated `tokens` (docs/serving.md's names) after `prompt`."""
    ids = [labels[t] for t in tokens]
    lp = log_softmax(model, prompt + ids)
    return sum(float(lp[len(prompt) - 1 + i, tid]) for i, tid in enumerate(ids))


@pytest.mark.parametrize("n,best_of", [(1, 4), (2, 5)])
def test_best_of_returns_the_n_most_likely_samples(hf, client, labels, n, best_of):
    pool = client.completions.create(prompt=PROMPTS, n=best_of, logprobs=0, **KW)
    best = client.completions.create(prompt=PROMPTS, n=n, best_of=best_of, logprobs=0, **KW)
    assert [c.index for c in best.choices] == list(range(len(PROMPTS) * n))
    assert best.usage.completion_tokens == pool.usage.completion_tokens  # every sample is billed
    assert best.usage.prompt_tokens == pool.usage.prompt_tokens
    for p, text in enumerate(PROMPTS):
        prompt = prompt_ids(text)
        candidates = pool.choices[p * best_of:(p + 1) * best_of]
        score = {}
        for c in candidates:
            assert sum(c.logprobs.token_logprobs) == pytest.approx(
                cumulative(hf[0], prompt, c.logprobs.tokens, labels), abs=TOL * len(c.logprobs.tokens))
            score[c.text] = cumulative(hf[0], prompt, c.logprobs.tokens, labels)
        assert len(score) == best_of, "two samples alike: pick another seed"
        returned = best.choices[p * n:(p + 1) * n]
        got = [score[c.text] for c in returned]  # KeyError: not one of the best_of samples
        assert got == sorted(got, reverse=True)  # best first
        others = [v for t, v in score.items() if t not in {c.text for c in returned}]
        assert min(got) > max(others) + 1e-3, (got, others)
        for c in returned:  # the logprobs it reports are transformers'
            assert c.logprobs.token_logprobs == pytest.approx(
                [float(x) for x in _token_logprobs(hf[0], prompt, c.logprobs.tokens, labels)], abs=TOL)


def _token_logprobs(model, prompt, tokens, labels):
    ids = [labels[t] for t in tokens]
    lp = log_softmax(model, prompt + ids)
    return [lp[len(prompt) - 1 + i, tid] for i, tid in enumerate(ids)]


def test_best_of_without_logprobs(client):
    with_lp = client.completions.create(prompt=PROMPTS[0], n=2, best_of=4, logprobs=0, **KW)
    plain = client.completions.create(prompt=PROMPTS[0], n=2, best_of=4, **KW)
    assert [c.text for c in plain.choices] == [c.text for c in with_lp.choices]
    assert all(c.logprobs is None for c in plain.choices)


def test_best_of_refusals(server, client):
    with pytest.raises(openai.BadRequestError, match="stream"):
        client.completions.create(prompt=PROMPTS[0], n=1, best_of=3, stream=True, **KW)
    for body in ({"n": 3, "best_of": 2}, {"best_of": 9}, {"best_of": 0}, {"best_of": "3"}):
        status, resp = call("POST", server.url + "/v1/completions", {"model": "opt-best", "prompt": "x", **body})
        assert status == 400 and resp["error"]["param"] == "best_of", (body, resp)
    # best_of = n changes nothing, streamed or not.
    s = list(client.completions.create(prompt=PROMPTS[0], n=2, best_of=2, stream=True, **KW))
    assert {ch.choices[0].index for ch in s} == {0, 1}
