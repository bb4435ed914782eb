"""Special tokens written in the text ("</s>", "<pad>") against transformers' OPT tokenizer as
released (tokenizer_config.json / special_tokens_map.json of facebook/opt-*: "</s>" is bos, eos
and unk, "<pad>" pads, no lstrip/rstrip), slow and fast: on every path (`tokenize`, `score`,
`generate`, the server) optforge reads them as the ids 2 and 1 with the text around them
encoded on its own, and with --no-parse-special as plain text (the raw `tokenizers` BPE)."""
import json
import shutil

import pytest

from conftest import run_optforge
from serve_util import call, make_tiny_model, serve
from tokenizer_reference import TOK_DIR, encode_cli, opt_slow_tokenizer, raw_bpe, special_corpus


def _opt_token(content):
    return {"content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True}


# facebook/opt-125m's files as released (the "__type" marker is how old transformers saved them).
OPT_TOKENIZER_CONFIG = {
    "errors": "replace", "add_prefix_space": False, "add_bos_token": True, "tokenizer_class": "GPT2Tokenizer",
    "special_tokens_map_file": None, "name_or_path": "patrickvonplaten/opt-30b",
    **{k: dict(_opt_token(c), __type="AddedToken") for k, c in
       (("unk_token", "</s>"), ("bos_token", "</s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"))},
}
OPT_SPECIAL_TOKENS_MAP = {k: _opt_token(c) for k, c in
                          (("bos_token", "</s>"), ("eos_token", "</s>"), ("unk_token", "</s>"), ("pad_token", "<pad>"))}


@pytest.fixture(scope="module")
def opt_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("opt-tokenizer")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TOK_DIR / name, d / name)
    (d / "tokenizer_config.json").write_text(json.dumps(OPT_TOKENIZER_CONFIG))
    (d / "special_tokens_map.json").write_text(json.dumps(OPT_SPECIAL_TOKENS_MAP))
    return d


@pytest.fixture(scope="module")
def hf_slow(opt_dir):
    from transformers import GPT2Tokenizer
    return GPT2Tokenizer.from_pretrained(opt_dir)


@pytest.fixture(scope="module")
def hf_fast(opt_dir):
    from transformers import GPT2TokenizerFast
    return GPT2TokenizerFast.from_pretrained(opt_dir)


@pytest.fixture(scope="module")
def hf_plain():
    return raw_bpe()


def test_reference_reads_specials_without_stripping(hf_slow, hf_fast):
    # What is being matched: the released config's flags, and the ids the issue quotes.
    for tok in (hf_slow, hf_fast):
        flags = {t.content: (t.lstrip, t.rstrip, t.single_word) for t in tok.added_tokens_decoder.values()}
        assert flags == {"</s>": (False, False, False), "<pad>": (False, False, False)}
        assert tok("a</s>b")["input_ids"] == [2, 102, 2, 428]
        assert tok("x <pad>")["input_ids"] == [2, 1178, 1437, 1]


def test_corpus_matches_hf_fast_and_slow(hf_slow, hf_fast, opt_dir, optforge_bin):
    corpus = special_corpus()
    assert sum("</s>" in s for s in corpus) > 1000 and sum("<pad>" in s for s in corpus) > 1000
    fast = hf_fast(corpus)["input_ids"]
    slow = [hf_slow(s)["input_ids"] for s in corpus]
    bad = [(s, f, w) for s, f, w in zip(corpus, fast, slow) if f != w]
    assert not bad, f"slow and fast disagree on {len(bad)}, e.g. {bad[:3]}"
    for args in ((), ("--tokenizer", opt_dir)):  # built-in files, and the folder with its configs
        got = encode_cli(corpus, *args)
        bad = [(s, g, w) for s, g, w in zip(corpus, got, fast) if g != w]
        assert not bad, f"{len(bad)} of {len(corpus)} differ from transformers ({args}), e.g. {bad[:3]}"


# Special-token strings and near-misses (OPT's and other models'), as untrusted text might hold them.
PLAIN_TEXTS = ["a </s> b", "<pad><pad>", "</s>", "<s>x<unk>", "<|endoftext|>"]


def test_no_parse_special_is_plain_text(hf_plain, optforge_bin):
    # With --no-parse-special (for untrusted text) optforge encodes "</s>" as ordinary text, like
    # metaseq and the raw `tokenizers` BPE, where HF's tokenizers turn it into id 2.
    corpus = special_corpus(1000, seed=6) + PLAIN_TEXTS
    got = encode_cli(corpus, "--no-parse-special", "--no-bos")
    want = [e.ids for e in hf_plain.encode_batch(corpus)]
    assert got == want
    assert encode_cli(["a</s>b"], "--no-parse-special") == [[2, 102, 49138, 29, 15698, 428]]
    # The BOS still goes first; the text's "</s>" is never the id 2, unlike in transformers'.
    got = encode_cli(PLAIN_TEXTS, "--no-parse-special")
    assert got == [[2] + e.ids for e in hf_plain.encode_batch(PLAIN_TEXTS)]
    assert 2 not in got[0][1:]
    assert opt_slow_tokenizer().encode("a </s> b")[1:] != got[0][1:]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("special") / "opt-tiny.pt")


TEXT = "Hello</s> world <pad>\n</s>"


def test_score_and_generate_read_specials(model, hf_fast, hf_plain, tmp_path, optforge_bin):
    (tmp_path / "t.txt").write_text(TEXT)
    want = hf_fast(TEXT)["input_ids"]
    plain = [2] + hf_plain.encode(TEXT).ids
    assert want.count(2) == 3 and want.count(1) == 1
    for extra, ids in (((), want), (("--no-parse-special",), plain)):
        s = json.loads(run_optforge("score", model, tmp_path / "t.txt", "--json", "--threads", 2, *extra).stdout)
        assert [t["id"] for t in s["tokens"]] == ids
        g = json.loads(run_optforge("generate", model, "--prompt", TEXT, "--max-tokens", 1, "--temperature", 0,
                                    "--echo", "--json", "--threads", 2, *extra).stdout)
        assert g["prompt_ids"] == ids


def test_server_reads_specials_unless_told_not_to(model, hf_fast, hf_plain, optforge_bin):
    want = hf_fast(TEXT)["input_ids"]
    plain = [2] + hf_plain.encode(TEXT).ids
    for extra, ids in (((), want), (("--no-parse-special",), plain)):
        with serve(model, *extra) as s:
            status, r = call("POST", s.url + "/tokenize", {"content": TEXT, "add_special": True})
            assert status == 200 and r == {"tokens": ids}
            status, r = call("POST", s.url + "/v1/completions", {"model": "opt-tiny", "prompt": TEXT, "max_tokens": 0, "echo": True,
                                                                  "logprobs": 0})
            assert status == 200, r
            assert r["usage"]["prompt_tokens"] == len(ids)
            want_tokens = [hf_fast.decode([i], clean_up_tokenization_spaces=False) for i in ids]
            assert r["choices"][0]["logprobs"]["tokens"] == want_tokens, r
