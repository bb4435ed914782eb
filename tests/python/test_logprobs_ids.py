"""Tokens that print alike stay apart, and text that ends inside a character is the same on
every path.

A crafted OPT model (built with transformers, saved as safetensors) decodes deterministically
"Hello" -> b"\\xf0\\x9f" -> b"\\xa4" -> b"\\x97" -> b"\\xf0\\x9f" -> ... (the bytes of U+1F917 cut into
three tokens), and at every position its next four candidates are ids that print alike: 50265
and 50266 (embedding rows beyond the vocab, no text at all) and the lone bytes b"\\xf0" and b"\\x9f".
Its only layer's attention is zero, so each position sees its own token; the MLP maps a token to
the next one's output direction, and the final layer norm's bias gives the four alternatives the
same logits everywhere.

Checked against transformers (the logits and log_softmax of the same model), transformers'
GPT2Tokenizer.decode and Python's bytes.decode("utf-8", errors="replace") (the text), and the
openai client (the response shapes): five distinct entries per position with `logprobs: 5`,
each id once in alpa's /logprobs and in `generate --json --top-logprobs`, and byte-identical text
from plain `generate` (also with --n 2 and --echo), `generate --json` and the server.
"""
import json

import openai
import pytest
import torch
from transformers import GPT2Tokenizer, OPTConfig, OPTForCausalLM

from conftest import run_optforge
from serve_util import call, serve
from tokenizer_reference import MERGES, VOCAB, label, token_bytes

TOL = 1e-4
D = 16
HELLO, F09F, A4, B97 = 31414, 6569, 10470, 6800  # "Hello", b"\xf0\x9f", b"\xa4", b"\x97"
CHAIN = {HELLO: F09F, F09F: A4, A4: B97, B97: F09F}
# Alternatives with their weight on the constant direction: 50265/50266 have no bytes, the other
# two are single bytes that are not UTF-8 on their own.
ALTS = {50265: 2.0, 49585: 1.6, 50266: 1.2, 4333: 0.8}
PROMPT = [2, HELLO]
MAX_TOKENS = 5  # ends after b"\xf0\x9f" b"\xa4": inside the second character


def build_model():
    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=50272, hidden_size=D, num_hidden_layers=1, ffn_dim=8, num_attention_heads=2,
                    max_position_embeddings=64, word_embed_proj_dim=D, do_layer_norm_before=True,
                    dropout=0.0, attention_dropout=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2)
    model = OPTForCausalLM(cfg).eval()
    dec = model.model.decoder
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = dec.embed_tokens.weight
        emb.normal_(0, 0.02)
        ident = {HELLO: 0, F09F: 1, A4: 2, B97: 3}   # what the MLP recognises
        out_key = {F09F: 5, A4: 6, B97: 7}            # where a token's logit comes from
        for tid in list(ident) + list(ALTS):
            emb[tid].zero_()
        for tid, k in ident.items():
            emb[tid, k] = 4.0
        for tid, k in out_key.items():
            emb[tid, k] = 3.0
        for tid, s in ALTS.items():
            emb[tid, 9] = s
        layer = dec.layers[0]
        for ln in (layer.self_attn_layer_norm, layer.final_layer_norm):
            ln.weight.fill_(1.0)
        for tid, k in ident.items():
            layer.fc1.weight[k, k] = 1.0
            layer.fc1.bias[k] = -1.0
            layer.fc2.weight[out_key[CHAIN[tid]], k] = 10.0
        for k in (5, 6, 7):
            dec.final_layer_norm.weight[k] = 1.0
        dec.final_layer_norm.bias[9] = 3.0
    return model


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    model = build_model()
    path = tmp_path_factory.mktemp("crafted") / "opt-crafted"
    model.save_pretrained(path, safe_serialization=True)
    return model, str(path)


@pytest.fixture(scope="module")
def reference(crafted):
    """The greedy ids, the text as HF decodes it, and log_softmax at each generated position."""
    model, _ = crafted
    ids = list(PROMPT)
    for _ in range(MAX_TOKENS):
        with torch.no_grad():
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    gen = ids[len(PROMPT):]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    table = token_bytes()
    text = b"".join(table[i] for i in gen).decode("utf-8", errors="replace")
    hf_tok = GPT2Tokenizer(VOCAB, MERGES)
    assert hf_tok.decode(gen, clean_up_tokenization_spaces=False) == text
    prompt_text = b"".join(table[i] for i in PROMPT[1:]).decode("utf-8", errors="replace")
    return {"ids": ids, "gen": gen, "text": text, "prompt_text": prompt_text, "lp": lp, "table": table}


def test_the_crafted_model_does_what_the_test_needs(reference):
    assert reference["gen"] == [F09F, A4, B97, F09F, A4]
    assert reference["text"] == "\U0001F917\ufffd"  # ends inside a character
    lp = reference["lp"]
    for pos in range(len(PROMPT) - 1, len(reference["ids"]) - 1):
        top = set(torch.topk(lp[pos], 5).indices.tolist())
        assert top == {reference["ids"][pos + 1], *ALTS}
        # Under the old rule (text with U+FFFD, nothing for no bytes) these collide into 2 keys.
        assert len({reference["table"].get(t, b"").decode("utf-8", "replace") for t in top}) == 2


def generate(path, *args, **kw):
    return run_optforge("generate", path, "--prompt-ids", ",".join(map(str, PROMPT)), "--max-tokens", MAX_TOKENS,
                        "--temperature", 0, "--threads", 2, *args, **kw)


def generate_bytes(path, *args):
    """Plain `generate`'s stdout as bytes: nothing decodes (or repairs) it on the way."""
    return generate(path, *args, text=False).stdout


def test_cli_lists_each_id_once_with_transformers_logprobs(crafted, reference):
    _, path = crafted
    out = json.loads(generate(path, "--json", "--top-logprobs", 5).stdout)
    choice = out["choices"][0]
    assert choice["ids"] == reference["gen"]
    lp, table = reference["lp"], reference["table"]
    for i, tok in enumerate(choice["tokens"]):
        pos = len(PROMPT) - 1 + i
        ids = [t["id"] for t in tok["top_logprobs"]]
        assert len(ids) == 5 and set(ids) == {reference["gen"][i], *ALTS}
        for t in tok["top_logprobs"]:
            assert t["logprob"] == pytest.approx(float(lp[pos, t["id"]]), abs=TOL)
            assert t["text"] == label(t["id"], table)
        assert tok["text"] == label(tok["id"], table)


def test_plain_json_and_server_text_are_the_same_bytes(crafted, reference):
    _, path = crafted
    text = reference["text"]
    assert generate_bytes(path) == (text + "\n").encode()
    assert json.loads(generate(path, "--json").stdout)["choices"][0]["text"] == text
    assert generate_bytes(path, "--n", 2) == "".join(f"--- sample {i} (length)\n{text}\n" for i in range(2)).encode()
    assert generate_bytes(path, "--echo") == (reference["prompt_text"] + text + "\n").encode()
    echoed_json = json.loads(generate(path, "--echo", "--json", "--n", 2).stdout)
    assert [c["text"] for c in echoed_json["choices"]] == [reference["prompt_text"] + text] * 2


def test_score_names_each_id_once_with_transformers_logprobs(crafted, reference, tmp_path):
    """`score --json` names tokens by the same rule: pieces of a character, ids without bytes and
    </s> each get their own name; the logprobs are transformers' log_softmax."""
    model, path = crafted
    ids = reference["ids"] + [50265, 49585, 50266, 2]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    (tmp_path / "ids.txt").write_text(json.dumps(ids) + "\n")
    out = json.loads(run_optforge("score", path, tmp_path / "ids.txt", "--ids", "--json", "--threads", 2).stdout)
    assert [t["id"] for t in out["tokens"]] == ids
    assert [t["text"] for t in out["tokens"]] == [label(i, reference["table"]) for i in ids]
    assert len({t["text"] for t in out["tokens"]}) == len(set(ids))
    assert out["tokens"][0]["logprob"] is None
    for i in range(1, len(ids)):
        assert out["tokens"][i]["logprob"] == pytest.approx(float(lp[i - 1, ids[i]]), abs=TOL)


@pytest.fixture(scope="module")
def server(crafted):
    with serve(crafted[1]) as s:
        yield s


def test_openai_logprobs_keep_every_id(server, reference):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    model_id = client.models.list().data[0].id
    r = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, logprobs=5)
    c = r.choices[0]
    assert c.text == reference["text"] and c.finish_reason == "length"
    table, lp = reference["table"], reference["lp"]
    assert c.logprobs.tokens == [label(t, table) for t in reference["gen"]]
    assert c.logprobs.tokens[:3] == ["bytes:\\xf0\\x9f", "bytes:\\xa4", "bytes:\\x97"]
    for i, top in enumerate(c.logprobs.top_logprobs):
        pos = len(PROMPT) - 1 + i
        want = {label(t, table): float(lp[pos, t]) for t in [reference["gen"][i], *ALTS]}
        assert len(top) == 5 and set(top) == set(want)
        for key, value in top.items():
            assert value == pytest.approx(want[key], abs=TOL)
        assert c.logprobs.token_logprobs[i] == pytest.approx(float(lp[pos, reference["gen"][i]]), abs=TOL)
    # OpenAI's text_offset: a token that ends inside a character adds no character until the
    # token that completes it.
    assert c.logprobs.text_offset == [0, 0, 0, 1, 1]

    # Streamed, the pieces join to the same text, and echo puts the prompt's text first.
    pieces = [ch.choices[0].text for ch in client.completions.create(
        model=model_id, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stream=True)]
    assert "".join(pieces) == reference["text"]
    e = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, echo=True,
                                  logprobs=5)
    assert e.choices[0].text == reference["prompt_text"] + reference["text"]
    assert e.choices[0].logprobs.tokens[:2] == ["</s>", "Hello"]


def test_alpa_logprobs_list_each_id_once(server, reference):
    status, r = call("POST", server.url + "/logprobs", {"prompt": [PROMPT], "top_k": 5})
    assert status == 200
    lp = reference["lp"]
    assert sorted(r["indices"][0]) == sorted({F09F, *ALTS})
    for tid, value in zip(r["indices"][0], r["logprobs"][0]):
        assert value == pytest.approx(float(lp[len(PROMPT) - 1, tid]), abs=TOL)
    status, r = call("POST", server.url + "/completions", {"prompt": [PROMPT], "max_tokens": MAX_TOKENS,
                                                          "temperature": 0})
    assert status == 200 and r["choices"][0]["text"] == reference["text"]
