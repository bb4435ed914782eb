"""`optforge serve` against its clients: the `openai` package (completions, streaming, logprobs,
n > 1, stop), raw HTTP for the exact shapes, alpa's request shapes, llama.cpp's tokenize routes;
parity with `optforge generate`; continuous batching giving the same text as one-by-one; bad
input answered with 4xx error objects; a client that disconnects frees its slot; /metrics
accepted by promtool; SIGTERM ends it gracefully. Tiny random models keep it fast."""
import concurrent.futures
import http.client
import json
import shutil
import socket
import subprocess
import time

import openai
import pytest

from conftest import run_optforge
from serve_util import call, make_tiny_model, metric, serve, wait_until

PROMPTS = ["Hello world", "Paris is the capital city of", "def fib(k):\n    return", "émoji 🤗 and 你好",
           "The quick brown fox", "I'm HE'S", "a  b", "Once upon a time"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("serve") / "opt-tiny.pt")


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """Wide enough that 2,000 tokens take many seconds: a request is still running when looked at."""
    return make_tiny_model(tmp_path_factory.mktemp("serve") / "opt-slow.pt", layers=2, embed_dim=512, heads=8)


@pytest.fixture(scope="module")
def server(model):
    with serve(model, "--max-body-bytes", 65536) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def generate_json(model, prompt, *args):
    out = run_optforge("generate", model, "--prompt", prompt, "--json", "--threads", 2, *args).stdout
    return json.loads(out)


# ---- the OpenAI API through the openai package

def test_models_and_health(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["opt-tiny"]
    assert call("GET", server.url + "/health") == (200, {"status": "ok"})


def test_greedy_completion_equals_generate(model, client):
    for prompt in PROMPTS[:4]:
        ref = generate_json(model, prompt, "--temperature", 0, "--max-tokens", 12)
        r = client.completions.create(model="opt-tiny", prompt=prompt, max_tokens=12, temperature=0)
        assert r.object == "text_completion" and r.id.startswith("cmpl-")
        assert r.choices[0].text == ref["choices"][0]["text"], prompt
        assert r.choices[0].finish_reason == ref["choices"][0]["finish_reason"]
        assert r.usage.prompt_tokens == len(ref["prompt_ids"])
        assert r.usage.completion_tokens == len(ref["choices"][0]["ids"])
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_matches_whole_response(client):
    whole = client.completions.create(model="opt-tiny", prompt=PROMPTS[1], max_tokens=20, temperature=0)
    chunks = list(client.completions.create(model="opt-tiny", prompt=PROMPTS[1], max_tokens=20, temperature=0,
                                            stream=True))
    assert len(chunks) > 5
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    with_usage = list(client.completions.create(model="opt-tiny", prompt="Hi", max_tokens=3, temperature=0,
                                                stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == 3


def test_sse_wire_format(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v1/completions", json.dumps({"model": "opt-tiny", "prompt": "Hi", "max_tokens": 4,
                                                         "temperature": 0, "stream": True}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    body = r.read().decode()
    events = body.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for e in events[:-2]:
        assert e.startswith("data: ")
        chunk = json.loads(e[6:])
        assert set(chunk) == {"id", "object", "created", "model", "choices"}
        assert set(chunk["choices"][0]) == {"text", "index", "logprobs", "finish_reason"}


def test_logprobs_and_echo(model, client):
    ref = generate_json(model, PROMPTS[0], "--temperature", 0, "--max-tokens", 6, "--echo", "--top-logprobs", 3)
    r = client.completions.create(model="opt-tiny", prompt=PROMPTS[0], max_tokens=6, temperature=0, logprobs=3,
                                  echo=True)
    c = r.choices[0]
    lp = c.logprobs
    ref_tokens = ref["choices"][0]["tokens"]
    assert c.text == ref["choices"][0]["text"] and c.text.startswith(PROMPTS[0])
    assert len(lp.tokens) == len(ref_tokens)
    assert lp.tokens[0] == "</s>" and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for got, want in zip(lp.token_logprobs[1:], ref_tokens[1:]):
        assert got == pytest.approx(want["logprob"], abs=1e-5)
    for top in lp.top_logprobs[1:]:
        assert 1 <= len(top) <= 3
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    # Each token's offset is where its text starts in the returned text.
    for tok, off in zip(lp.tokens[1:], lp.text_offset[1:]):
        assert c.text[off:off + len(tok)] == tok
    # Scoring a text: echo with max_tokens=0 (metaseq's perplexity recipe).
    s = client.completions.create(model="opt-tiny", prompt=PROMPTS[0], max_tokens=0, echo=True, logprobs=0)
    assert s.choices[0].text == PROMPTS[0] and s.usage.completion_tokens == 0
    assert s.choices[0].logprobs.token_logprobs[1:] == pytest.approx(lp.token_logprobs[1:3], abs=1e-6)


def test_n_samples_with_seed_match_generate(model, client):
    ref = generate_json(model, PROMPTS[4], "--n", 3, "--seed", 7, "--max-tokens", 8, "--temperature", 1.0)
    r = client.completions.create(model="opt-tiny", prompt=PROMPTS[4], n=3, seed=7, max_tokens=8, temperature=1.0)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == [c["text"] for c in ref["choices"]]
    again = client.completions.create(model="opt-tiny", prompt=PROMPTS[4], n=3, seed=7, max_tokens=8)
    assert [c.text for c in again.choices] == [c.text for c in r.choices]


def test_several_prompts_order_by_prompt_then_sample(server, client):
    single = [client.completions.create(model="opt-tiny", prompt=p, max_tokens=5, temperature=0).choices[0].text
              for p in PROMPTS[:3]]
    r = client.completions.create(model="opt-tiny", prompt=PROMPTS[:3], n=2, max_tokens=5, temperature=0)
    assert [c.index for c in r.choices] == list(range(6))
    assert [c.text for c in r.choices] == [t for t in single for _ in range(2)]
    toks = call("POST", server.url + "/tokenize", {"content": PROMPTS[0], "add_special": True})[1]["tokens"]
    by_ids = client.completions.create(model="opt-tiny", prompt=[toks, toks], max_tokens=5, temperature=0)
    assert [c.text for c in by_ids.choices] == [single[0]] * 2


def test_stop_sequences(client):
    full = client.completions.create(model="opt-tiny", prompt=PROMPTS[1], max_tokens=16, temperature=0).choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 3]
    r = client.completions.create(model="opt-tiny", prompt=PROMPTS[1], max_tokens=16, temperature=0, stop=[stop, "zzzq"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[:full.index(stop)]
    streamed = client.completions.create(model="opt-tiny", prompt=PROMPTS[1], max_tokens=16, temperature=0,
                                         stop=stop, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_concurrent_greedy_requests_equal_sequential(client):
    prompts = [f"{PROMPTS[i % len(PROMPTS)]} {i}" for i in range(32)]

    def one(p):
        return client.completions.create(model="opt-tiny", prompt=p, max_tokens=16, temperature=0).choices[0].text

    sequential = [one(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        concurrent_ = list(pool.map(one, prompts))
    assert concurrent_ == sequential


# ---- alpa's and llama.cpp's shapes

def test_alpa_completions_and_logprobs(server, client):
    base = server.url
    status, r = call("POST", base + "/completions", {"prompt": "Paris is\r\nthe", "max_tokens": 6, "temperature": 0,
                                                     "top_p": 1, "model": "default"})
    assert status == 200 and r["object"] == "text_completion" and isinstance(r["choices"][0]["text"], str)
    want = client.completions.create(model="opt-tiny", prompt="Paris is\nthe", max_tokens=6, temperature=0)
    assert r["choices"][0]["text"] == want.choices[0].text
    status, r = call("POST", base + "/completions", {"prompt": ["a", "b"], "max_tokens": 3, "echo": True,
                                                     "temperature": 0.0001})
    assert status == 200 and [c["text"][:1] for c in r["choices"]] == ["a", "b"]

    toks = call("POST", base + "/tokenize", {"content": "Hello world", "add_special": True})[1]["tokens"]
    status, lp = call("POST", base + "/logprobs", {"prompt": [toks], "top_k": 5})
    assert status == 200 and len(lp["logprobs"][0]) == 5 and len(lp["indices"][0]) == 5
    assert lp["logprobs"][0] == sorted(lp["logprobs"][0], reverse=True)
    nxt = lp["indices"][0][0]
    status, lp2 = call("POST", base + "/logprobs", {"prompt": [toks + [nxt]], "top_k": 5, "cache_id": lp["cache_id"]})
    assert status == 200 and lp2["cache_id"] == lp["cache_id"]
    status, err = call("POST", base + "/logprobs", {"prompt": [toks], "top_k": 5, "cache_id": lp["cache_id"]})
    assert status == 400 and err["type"] == "error" and "extend" in err["message"]
    status, err = call("POST", base + "/completions", {"prompt": [], "max_tokens": 3})
    assert status == 400 and err["type"] == "error" and err["message"] == "The prompt must be nonempty."


def test_tokenize_detokenize(server):
    status, r = call("POST", server.url + "/tokenize", {"content": "Hello world", "add_special": True})
    assert status == 200 and r == {"tokens": [2, 31414, 232]}
    _, r = call("POST", server.url + "/tokenize", {"content": " 你好", "with_pieces": True})
    assert r["tokens"][0] == {"id": 1437, "piece": " "} and isinstance(r["tokens"][1]["piece"], list)
    assert call("POST", server.url + "/detokenize", {"tokens": [2, 31414, 232]}) == (200, {"content": "Hello world"})


def test_web_page_is_served(server):
    status, html = call("GET", server.url + "/")
    assert status == 200 and "<textarea" in html and "/app.js" in html
    for path in ("/app.js", "/style.css"):
        assert call("GET", server.url + path)[0] == 200


# ---- limits and bad input

def expect_error(status_body, status, param=None):
    code, body = status_body
    assert code == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    if param:
        assert body["error"]["param"] == param
    return body


def test_bad_requests_get_4xx_error_objects(server, client):
    url = server.url + "/v1/completions"
    ok = {"model": "opt-tiny", "prompt": "Hi", "max_tokens": 2}
    expect_error(call("POST", url, raw=b'{"model": "opt-tiny", "prompt": '), 400)
    expect_error(call("POST", url, raw=b"[1, 2]"), 400)
    expect_error(call("POST", url, {**ok, "max_tokens": "ten"}), 400, "max_tokens")
    expect_error(call("POST", url, {**ok, "max_tokens": -1}), 400, "max_tokens")
    expect_error(call("POST", url, {**ok, "max_tokens": 1.5}), 400, "max_tokens")
    expect_error(call("POST", url, {**ok, "temperature": 3}), 400, "temperature")
    expect_error(call("POST", url, {**ok, "temperature": "hot"}), 400, "temperature")
    expect_error(call("POST", url, {**ok, "n": 0}), 400, "n")
    expect_error(call("POST", url, {**ok, "logprobs": 9}), 400, "logprobs")
    expect_error(call("POST", url, {**ok, "stream": "yes"}), 400, "stream")
    expect_error(call("POST", url, {**ok, "stop": [1]}), 400, "stop")
    expect_error(call("POST", url, {**ok, "prompt": []}), 400, "prompt")
    expect_error(call("POST", url, {**ok, "prompt": [[]]}), 400, "prompt")
    expect_error(call("POST", url, {**ok, "prompt": [1, "a"]}), 400, "prompt")
    expect_error(call("POST", url, {**ok, "prompt": [999999]}), 400, "prompt")
    expect_error(call("POST", url, {**ok, "prompt": {"a": 1}}), 400, "prompt")
    expect_error(call("POST", url, {**ok, "frobnicate": 1}), 400, "frobnicate")
    expect_error(call("POST", url, {**ok, "model": "gpt-4"}), 404, "model")
    expect_error(call("POST", url, {"prompt": "Hi"}), 400, "model")
    # Longer than the context (2048): 400, not a crash; the message says why.
    body = expect_error(call("POST", url, {**ok, "prompt": [5] * 2100}), 400, "prompt")
    assert "2048" in body["error"]["message"]
    expect_error(call("POST", url, {**ok, "prompt": [5] * 2040, "max_tokens": 16}), 400, "max_tokens")
    expect_error(call("POST", url, raw=b"x" * 70000), 413)
    expect_error(call("GET", url), 405)
    expect_error(call("POST", server.url + "/nowhere", ok), 404)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="opt-tiny", prompt="Hi", max_tokens=-5)
    # A thousand bad requests in a row on one keep-alive connection, then a good one.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    bad_bodies = [b"{", b'{"model": "opt-tiny", "prompt": 5}', b'{"model": "opt-tiny", "max_tokens": -3}', b"null"]
    for i in range(1000):
        conn.request("POST", "/v1/completions", bad_bodies[i % len(bad_bodies)], {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = json.loads(r.read())
        assert 400 <= r.status < 500 and "error" in data
    conn.request("POST", "/v1/completions", json.dumps({**ok, "temperature": 0}), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["choices"][0]["finish_reason"] in ("length", "stop")


def test_malformed_http_is_refused(server):
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(raw)
            answer = s.recv(65536).decode(errors="replace")
        assert answer.startswith("HTTP/1.1 4") or answer.startswith("HTTP/1.1 505"), answer[:80]
        assert '"error"' in answer
    assert call("GET", server.url + "/health")[0] == 200


def test_disconnect_mid_stream_frees_the_slot(slow_model):
    with serve(slow_model) as server:
        check_disconnect_frees_the_slot(server)


def check_disconnect_frees_the_slot(server):
    before = metric(call("GET", server.url + "/metrics")[1], 'optforge_sequences_finished_total{reason="cancelled"}')
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body = json.dumps({"model": "opt-slow", "prompt": "Hello", "max_tokens": 2000, "temperature": 0, "stream": True})
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    got = b""
    while b"data: " not in got:
        got += s.recv(4096)
    def running():
        m = call("GET", server.url + "/metrics")[1]
        return metric(m, "optforge_batch_size") == 1 and metric(m, "optforge_kv_cache_used_tokens") > 0
    assert wait_until(running, timeout=5)
    s.close()

    def freed():
        m = call("GET", server.url + "/metrics")[1]
        return (metric(m, "optforge_batch_size") == 0 and metric(m, "optforge_kv_cache_used_tokens") == 0 and
                metric(m, 'optforge_sequences_finished_total{reason="cancelled"}') == before + 1)
    assert wait_until(freed, timeout=5)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed")
def test_metrics_pass_promtool(server, client):
    client.completions.create(model="opt-tiny", prompt="Hi", max_tokens=3)
    text = call("GET", server.url + "/metrics")[1]
    for name in ("optforge_http_requests_total", "optforge_prompt_tokens_total", "optforge_generation_tokens_total",
                 "optforge_queue_depth", "optforge_batch_size", "optforge_kv_cache_usage_ratio",
                 "optforge_time_to_first_token_seconds_count", "optforge_time_per_output_token_seconds_count"):
        assert metric(text, name) >= 0
    assert metric(text, "optforge_generation_tokens_total") > 0
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


# ---- servers with other options

def test_api_key(model):
    with serve(model, "--api-key", "s3cret") as s:
        expect_error(call("GET", s.url + "/v1/models"), 401)
        expect_error(call("POST", s.url + "/v1/completions", {"model": "opt-tiny", "prompt": "Hi"},
                          headers={"Authorization": "Bearer wrong"}), 401)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0).completions.create(
                model="opt-tiny", prompt="Hi", max_tokens=1)
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", max_retries=0)
        assert c.completions.create(model="opt-tiny", prompt="Hi", max_tokens=2).usage.completion_tokens >= 0
        assert call("POST", s.url + "/completions", {"prompt": "Hi", "max_tokens": 2, "api_key": "s3cret"})[0] == 200
        assert call("GET", s.url + "/health")[0] == 200  # health and the page stay open


def test_sigterm_finishes_running_requests_and_exits_0(model):
    with serve(model) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps({"model": "opt-tiny", "prompt": "Hi", "max_tokens": 300,
                                                             "temperature": 0, "stream": True}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200
        first = r.readline()
        assert first.startswith(b"data: ")
        t0 = time.monotonic()
        assert s.stop(timeout=30) == 0
        rest = r.read().decode()
        assert rest.rstrip().endswith("data: [DONE]") and '"finish_reason":"length"' in rest
        assert time.monotonic() - t0 < 30
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


def test_once_prints_one_completion(model):
    ref = generate_json(model, "Hello world", "--temperature", 0, "--max-tokens", 8)
    out = run_optforge("serve", model, "--once", "Hello world", "--once-max-tokens", 8, "--threads", 2).stdout
    assert out == "Hello world" + ref["choices"][0]["text"] + "\n"
