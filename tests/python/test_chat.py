"""POST /v1/chat/completions against the openai client and transformers.

The model is a small random OPT built by transformers (chat_reference.py); the server runs it
with an f32 KV cache, so its logprobs must equal transformers' log_softmax within 1e-4. The
rendered prompt is never taken from the server: the tests render the messages by
docs/serving.md's template rule in Python and tokenize them with transformers' OPT tokenizer;
greedy replies must be transformers' greedy continuation of that prompt, decoded as HF decodes,
cut at the stop strings. The openai client parses every response and stream chunk."""
import json
import os

import openai
import pytest

from chat_reference import (DEFAULT_TEMPLATE, build_model, greedy, label_to_id, log_softmax, prompt_ids, render,
                            text_of, token_bytes)
from conftest import assert_clean_error, run_optforge
from serve_util import call, serve
from tokenizer_reference import TOK_DIR

TOL = 1e-4
MAX_TOKENS = 12
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer "}, {"type": "text", "text": "again."}]},
    {"role": "user", "content": "Another?"},
]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "opt-chat"
    return build_model(path), path


@pytest.fixture(scope="module")
def table():
    return token_bytes()


@pytest.fixture(scope="module")
def labels(table):
    return label_to_id(table)


@pytest.fixture(scope="module")
def server(hf):
    with serve(hf[1], "--kv-dtype", "f32", "--model-name", "opt-chat") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def reference(hf, table):
    """transformers' greedy reply to MESSAGES under the default template."""
    ids = prompt_ids(render(MESSAGES))
    gen, gap = greedy(hf[0], ids, MAX_TOKENS)
    assert gap > 1e-3, "near-tie in the reference: pick another seed"
    return {"prompt": ids, "gen": gen, "text": text_of(gen, table, DEFAULT_TEMPLATE["stop"])}


def ids_of(entries, table):
    """Token ids from chat logprobs entries: their bytes (or `token_id:N` for ids without any)."""
    by_bytes = {b: i for i, b in table.items()}
    return [by_bytes[bytes(e.bytes)] if e.bytes is not None else int(e.token.split(":")[1]) for e in entries]


def check_logprobs(model, prompt, entries, table, top):
    """Each entry's logprob and top_logprobs equal transformers' log_softmax along the sequence."""
    ids = ids_of(entries, table)
    lp = log_softmax(model, prompt + ids)
    for i, (e, tid) in enumerate(zip(entries, ids)):
        row = lp[len(prompt) - 1 + i]
        assert e.logprob == pytest.approx(float(row[tid]), abs=TOL)
        assert list(e.bytes or []) == list(table.get(tid, b""))
        want = row.topk(top).values.tolist()
        assert [t.logprob for t in e.top_logprobs] == pytest.approx(want, abs=TOL)
        for t in e.top_logprobs:  # each alternative is the token its bytes name, with its own logprob
            alt = ids_of([t], table)[0]
            assert t.logprob == pytest.approx(float(row[alt]), abs=TOL)
    return ids


def test_greedy_reply_and_logprobs_equal_transformers(hf, client, reference, table, labels):
    r = client.chat.completions.create(model="opt-chat", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0,
                                       logprobs=True, top_logprobs=3)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "opt-chat"
    (c,) = r.choices
    assert c.index == 0 and c.message.role == "assistant"
    assert c.message.content == reference["text"]
    ids = check_logprobs(hf[0], reference["prompt"], c.logprobs.content, table, 3)
    assert ids == reference["gen"]
    assert [labels[e.token] for e in c.logprobs.content] == ids  # docs/serving.md's token names
    assert c.finish_reason == ("length" if len(ids) == MAX_TOKENS else "stop")
    assert r.usage.prompt_tokens == len(reference["prompt"])  # </s> first, as /v1/completions
    assert r.usage.completion_tokens == len(ids)
    assert r.usage.total_tokens == len(ids) + len(reference["prompt"])
    # max_completion_tokens is max_tokens' newer name; without logprobs there are none.
    r2 = client.chat.completions.create(model="opt-chat", messages=MESSAGES, max_completion_tokens=MAX_TOKENS,
                                        temperature=0)
    assert r2.choices[0].message.content == reference["text"] and r2.choices[0].logprobs is None


def test_stream_chunks(client, reference):
    chunks = list(client.chat.completions.create(model="opt-chat", messages=MESSAGES, max_tokens=MAX_TOKENS,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    with_choices = [ch for ch in chunks if ch.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(ch.choices[0].delta.role is None for ch in with_choices[1:])
    assert "".join(ch.choices[0].delta.content or "" for ch in with_choices) == reference["text"]
    assert [ch.choices[0].finish_reason for ch in with_choices[:-1]] == [None] * (len(with_choices) - 1)
    assert with_choices[-1].choices[0].finish_reason in ("length", "stop")
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == len(reference["prompt"])
    assert chunks[-1].usage.completion_tokens == len(reference["gen"])


def test_stream_with_logprobs_and_n(hf, client, reference, table):
    chunks = list(client.chat.completions.create(model="opt-chat", messages=MESSAGES, max_tokens=4, temperature=0,
                                                 n=2, stream=True, logprobs=True, top_logprobs=2))
    for j in range(2):
        mine = [ch.choices[0] for ch in chunks if ch.choices[0].index == j]
        entries = [e for c in mine if c.logprobs for e in c.logprobs.content]
        assert check_logprobs(hf[0], reference["prompt"], entries, table, 2) == reference["gen"][:4]


def test_n_seeded_samples_are_continuations_of_the_prompt(hf, client, reference, table):
    kw = dict(model="opt-chat", messages=MESSAGES, max_tokens=6, temperature=1.0, seed=11, n=3, logprobs=True)
    r = client.chat.completions.create(**kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    seqs = [check_logprobs(hf[0], reference["prompt"], c.logprobs.content, table, 0) for c in r.choices]
    assert len({tuple(s) for s in seqs}) > 1  # sampled, not greedy
    for c, s in zip(r.choices, seqs):
        assert c.message.content == text_of(s, table, DEFAULT_TEMPLATE["stop"])
    assert r.usage.completion_tokens == sum(map(len, seqs))
    again = client.chat.completions.create(**kw)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]


def test_stop(client, reference):
    text = reference["text"]
    assert len(text) > 8
    stop = text[len(text) // 2:len(text) // 2 + 3]
    r = client.chat.completions.create(model="opt-chat", messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0,
                                       stop=[stop, "never appears"])
    assert r.choices[0].message.content == text[:text.find(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_chat_template_file(hf, table, tmp_path):
    """--chat-template FILE: the prompt is the file's rendering (checked through transformers'
    greedy reply to it) and the file's stop strings end the reply."""
    template = {"system": {"prefix": "### Instruction:\n", "suffix": "\n\n"},
                "user": {"prefix": "Q: ", "suffix": "\n"},
                "assistant": {"prefix": "A: ", "suffix": "\n"},
                "generation_prompt": "A:"}
    ids = prompt_ids(render(MESSAGES, template))
    gen, gap = greedy(hf[0], ids, MAX_TOKENS)
    assert gap > 1e-3
    text = text_of(gen, table)
    stop = text[len(text) // 2:len(text) // 2 + 3]
    template["stop"] = [stop]
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    with serve(hf[1], "--kv-dtype", "f32", "--chat-template", path) as s:
        status, body = call("POST", s.url + "/v1/chat/completions",
                            {"model": s.model_id, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "temperature": 0})
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == text[:text.find(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == len(ids)


def test_bad_template_files_are_named(hf, tmp_path):
    cases = {"missing.json": ({"system": {"prefix": "", "suffix": ""}, "user": {"prefix": "", "suffix": ""},
                               "generation_prompt": "A:"}, "assistant"),
             "type.json": ({**DEFAULT_TEMPLATE, "generation_prompt": 3}, "generation_prompt"),
             "unknown.json": ({**DEFAULT_TEMPLATE, "bos": True}, "bos"),
             "role.json": ({**DEFAULT_TEMPLATE, "user": {"prefix": "U: "}}, "suffix")}
    for name, (content, key) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(content))
        proc = run_optforge("serve", hf[1], "--port", 0, "--chat-template", path, check=False, timeout=60)
        assert_clean_error(proc, path, key)
    (tmp_path / "broken.json").write_text("{")
    proc = run_optforge("serve", hf[1], "--port", 0, "--chat-template", tmp_path / "broken.json", check=False,
                        timeout=60)
    assert_clean_error(proc, tmp_path / "broken.json", "JSON")


def test_jinja_chat_template_in_tokenizer_config_is_refused(hf, tmp_path):
    folder = tmp_path / "opt-jinja"
    folder.mkdir()
    for f in os.listdir(hf[1]):
        os.symlink(hf[1] / f, folder / f)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}))
    proc = run_optforge("serve", folder, "--port", 0, check=False, timeout=60)
    assert_clean_error(proc, folder / "tokenizer_config.json", "Jinja", "--chat-template")
    # The same with --tokenizer pointing at a folder that carries one.
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    for f in ("vocab.json", "merges.txt"):
        os.symlink(TOK_DIR / f, tok / f)
    os.symlink(folder / "tokenizer_config.json", tok / "tokenizer_config.json")
    proc = run_optforge("serve", hf[1], "--port", 0, "--tokenizer", tok, check=False, timeout=60)
    assert_clean_error(proc, tok / "tokenizer_config.json", "Jinja")
    path = tmp_path / "template.json"
    path.write_text(json.dumps(DEFAULT_TEMPLATE))
    with serve(folder, "--chat-template", path) as s:
        status, body = call("POST", s.url + "/v1/chat/completions",
                            {"model": s.model_id, "messages": MESSAGES, "max_tokens": 2})
        assert status == 200, body


@pytest.mark.parametrize("name", ["chat_template.jinja", "chat_template.json", "additional_chat_templates"])
def test_chat_template_files_of_newer_transformers_are_refused(hf, tmp_path, name):
    """transformers' save_pretrained now writes a tokenizer's template to chat_template.jinja (not
    into tokenizer_config.json); chat_template.json and additional_chat_templates/ hold others.
    Each is as much a Jinja template as the tokenizer_config.json key, so each is refused."""
    folder = tmp_path / "opt-jinja"
    folder.mkdir()
    for f in os.listdir(hf[1]):
        os.symlink(hf[1] / f, folder / f)
    jinja = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    if name == "chat_template.json":
        (folder / name).write_text(json.dumps({"chat_template": jinja}))
    elif name == "additional_chat_templates":
        (folder / name).mkdir()
        (folder / name / "tool_use.jinja").write_text(jinja)
    else:
        (folder / name).write_text(jinja)
    proc = run_optforge("serve", folder, "--port", 0, check=False, timeout=60)
    assert_clean_error(proc, folder / name, "Jinja", "--chat-template")


@pytest.mark.parametrize("messages,where", [
    ([], "messages"),
    ("hello", "messages"),
    ([{"role": "tool", "content": "x"}], "messages[0].role"),
    ([{"role": "user"}], "messages[0].content"),
    ([{"role": "user", "content": None}], "messages[0].content"),
    ([{"content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": "x"}, {"role": "user", "content": 5}], "messages[1].content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
     "messages[0].content[0].image_url"),
    ([{"role": "user", "content": [{"type": "input_audio"}]}], "messages[0].content[0].type"),
    ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": "x", "name": "bob"}], "messages[0].name"),
    ([{"role": "assistant", "content": None, "tool_calls": []}], "messages[0].tool_calls"),
    (["x"], "messages[0]"),
])
def test_bad_messages_are_400_naming_the_field(server, messages, where):
    status, body = call("POST", server.url + "/v1/chat/completions", {"model": "opt-chat", "messages": messages})
    assert status == 400, body
    assert body["error"]["param"] == "messages" and body["error"]["type"] == "invalid_request_error"
    assert where in body["error"]["message"], body


def test_bad_fields(server, client):
    base = {"model": "opt-chat", "messages": MESSAGES[:2]}
    for extra, param in [({"tools": []}, "tools"), ({"response_format": {"type": "json_object"}}, "response_format"),
                         ({"top_logprobs": 2}, "top_logprobs"), ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                         ({"max_tokens": 2, "max_completion_tokens": 2}, "max_completion_tokens"),
                         ({"temperature": 3}, "temperature"), ({"n": 100}, "n"), ({"best_of": 2}, "best_of"),
                         ({"echo": True}, "echo"), ({"stream_options": {"include_usage": True}}, "stream_options")]:
        status, body = call("POST", server.url + "/v1/chat/completions", {**base, **extra})
        assert status == 400 and body["error"]["param"] == param, (extra, body)
    status, body = call("POST", server.url + "/v1/chat/completions", {**base, "model": "other"})
    assert status == 404, body
    status, body = call("POST", server.url + "/v1/chat/completions", {"model": "opt-chat"})
    assert status == 400 and body["error"]["param"] == "messages", body
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="opt-chat", messages=[{"role": "tool", "content": "x",
                                                                    "tool_call_id": "1"}])


def test_the_clients_own_reply_goes_back_as_history(client, hf, table):
    """The openai client's reply, model_dump()ed into the next request's messages, carries its
    empty fields as null (refusal, function_call, tool_calls): they say nothing and are taken; the
    next reply is transformers' greedy continuation of the whole conversation."""
    first = client.chat.completions.create(model="opt-chat", messages=MESSAGES, max_tokens=4, temperature=0)
    dumped = first.choices[0].message.model_dump()
    assert any(v is None for k, v in dumped.items() if k not in ("role", "content")), dumped
    history = MESSAGES + [dumped, {"role": "user", "content": "And one more?"}]
    r = client.chat.completions.create(model="opt-chat", messages=history, max_tokens=MAX_TOKENS, temperature=0)
    plain = MESSAGES + [{"role": "assistant", "content": dumped["content"]}, history[-1]]
    gen, gap = greedy(hf[0], prompt_ids(render(plain)), MAX_TOKENS)
    assert gap > 1e-3, "near-tie in the reference: pick another seed"
    assert r.choices[0].message.content == text_of(gen, table, DEFAULT_TEMPLATE["stop"])
    status, body = call("POST", client.base_url.__str__().rstrip("/") + "/chat/completions",
                        {"model": "opt-chat", "messages": [{"role": "user", "content": "x", "name": "bob"}]})
    assert status == 400 and body["error"]["message"].startswith("messages[0].name"), body


def test_default_max_tokens_is_what_the_kv_cache_holds(hf):
    """Without max_tokens a reply may fill the context, but not more than the KV cache pool holds:
    the default is shortened (finish_reason "length" where it ends), not refused; a max_tokens
    asked for that can never fit is still a 400 naming the pool."""
    with serve(hf[1], "--kv-cache-tokens", 64, "--max-batch", 2, "--model-name", "opt-chat") as s:
        messages = [{"role": "user", "content": "hi"}]
        status, body = call("POST", s.url + "/v1/chat/completions",
                            {"model": "opt-chat", "messages": messages, "n": 2, "temperature": 0,
                             "logit_bias": {"2": -100}})
        assert status == 200, body
        prompt = body["usage"]["prompt_tokens"]
        assert body["usage"]["completion_tokens"] == 2 * (32 - prompt)  # 2 samples x 2 blocks of 16 each
        assert {c["finish_reason"] for c in body["choices"]} == {"length"}
        status, body = call("POST", s.url + "/v1/chat/completions",
                            {"model": "opt-chat", "messages": messages, "max_tokens": 100})
        assert status == 400 and "--kv-cache-tokens 64" in body["error"]["message"], body
