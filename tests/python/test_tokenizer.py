"""`optforge tokenize` against Hugging Face's GPT-2 tokenizers built from the same vocab.json and
merges.txt: the slow `GPT2Tokenizer` (pure Python, the exact reference) and the Rust `tokenizers`
BPE. OPT's convention is checked on the reference itself: `</s>` (id 2) goes first."""
import json
import random
import subprocess
import time
import unicodedata

import pytest

from conftest import assert_clean_error, optforge_path, run_optforge
from tokenizer_reference import (TOK_DIR, corpus, encode_cli, first_mismatches, opt_slow_tokenizer,  # noqa: F401
                                 output_lines, raw_bpe)


@pytest.fixture(scope="module")
def hf_slow():
    return opt_slow_tokenizer()


@pytest.fixture(scope="module")
def hf_fast():
    return raw_bpe()


# ---------------------------------------------------------------- tests ---------------------------

def test_corpus_is_large_and_varied(corpus):
    assert len(corpus) >= 10000
    text = "".join(corpus)
    for needle in ["\u200d", "\U0001F3FD", "\u0301", "\r", "\t", "\u3000", "don't", "I'LL", "\x00"]:
        assert needle in text, repr(needle)
    scripts = {unicodedata.name(c, "?").split()[0] for c in text}
    assert {"CJK", "ARABIC", "DEVANAGARI", "CYRILLIC", "HANGUL", "GREEK"} <= scripts


def test_bos_convention_of_the_reference(hf_slow, optforge_bin):
    # The reference (HF's OPT setup, add_bos_token=True) puts </s> = 2 first, and only there.
    ids = hf_slow("Hello world")["input_ids"]
    assert ids == [2, 31414, 232]
    assert hf_slow.encode("Hello world", add_special_tokens=False) == [31414, 232]
    assert hf_slow.convert_ids_to_tokens(2) == "</s>" == hf_slow.bos_token
    assert encode_cli(["Hello world"]) == [ids]
    assert encode_cli(["Hello world"], "--no-bos") == [ids[1:]]


GOLDEN = [  # ids with the leading 2; test_golden_ids checks them against transformers' GPT2Tokenizer
    ("Hello world", [2, 31414, 232]),
    ("Paris is the capital city of", [2, 32826, 16, 5, 812, 343, 9]),
    ("\n", [2, 50118]), ("\n\n", [2, 50140]),
    ("a  b", [2, 102, 1437, 741]),
    ("trailing  ", [2, 9738, 7022, 1437, 1437]),
    ("I'm HE'S", [2, 100, 437, 12925, 108, 104]),
    ("def fib(k):\n    return", [2, 9232, 19961, 1640, 330, 3256, 50118, 1437, 1437, 1437, 671]),
    (" 你好", [2, 1437, 47856, 21402, 48975, 10809]),
    ("émoji 🤗", [2, 1140, 4992, 5186, 8103, 10470, 6800]),
]


def test_golden_ids(hf_slow, optforge_bin):
    texts = [t for t, _ in GOLDEN]
    assert [hf_slow.encode(t) for t in texts] == [ids for _, ids in GOLDEN]
    assert encode_cli(texts) == [ids for _, ids in GOLDEN]


def test_corpus_matches_hf_slow(corpus, hf_slow, optforge_bin):
    t0 = time.monotonic()
    got = encode_cli(corpus)
    elapsed = time.monotonic() - t0
    want = [hf_slow.encode(s) for s in corpus]
    n_bad, examples = first_mismatches(corpus, got, want)
    assert n_bad == 0, f"{n_bad} of {len(corpus)} differ, e.g. {examples}"
    assert elapsed < 20, f"{len(corpus)} lines took {elapsed:.1f}s"


def test_corpus_matches_hf_tokenizers(corpus, hf_fast, optforge_bin):
    got = encode_cli(corpus, "--no-bos")
    want = [e.ids for e in hf_fast.encode_batch(corpus)]
    n_bad, examples = first_mismatches(corpus, got, want)
    assert n_bad == 0, f"{n_bad} of {len(corpus)} differ, e.g. {examples}"


def test_decode_of_encode_round_trips(corpus, optforge_bin):
    ids = encode_cli(corpus)
    out = run_optforge("tokenize", "--decode", input="".join(json.dumps(i) + "\n" for i in ids)).stdout
    texts = [json.loads(line) for line in output_lines(out)]
    n_bad, examples = first_mismatches(corpus, texts, corpus)
    assert n_bad == 0, f"{n_bad} of {len(corpus)} differ, e.g. {examples}"


def test_decode_of_arbitrary_ids_matches_hf(hf_slow, optforge_bin):
    # Random ids split multi-byte characters; HF decodes with errors="replace", so must we.
    rng = random.Random(7)
    seqs = [[rng.randint(4, 50264) for _ in range(rng.randint(0, 20))] for _ in range(3000)]
    seqs += [[rng.randint(0, 255) + 4 for _ in range(rng.randint(1, 8))] for _ in range(2000)]
    seqs += [[2, 31414, 232, 50265, 50271, 1, 0, 3, 2]]  # specials dropped, padding rows empty
    out = run_optforge("tokenize", "--decode", input="".join(json.dumps(s) + "\n" for s in seqs)).stdout
    got = [json.loads(line) for line in output_lines(out)]
    want = [hf_slow.decode([i for i in s if 3 < i < 50265], skip_special_tokens=True,
                           clean_up_tokenization_spaces=False) for s in seqs]
    assert got[-1] == "Hello world"
    n_bad, examples = first_mismatches(seqs, got, want)
    assert n_bad == 0, f"{n_bad} of {len(seqs)} differ, e.g. {examples}"


def test_tokenizer_dir_gives_the_same_ids(corpus, optforge_bin):
    sample = corpus[:2000]
    assert encode_cli(sample, "--tokenizer", TOK_DIR) == encode_cli(sample)


def test_invalid_utf8_is_kept_byte_for_byte(hf_slow, optforge_bin):
    raw = [b"ok \xff\xfe bytes", b"\xc3", b"caf\xc3\xa9 \xe4\xbd", b"\xed\xa0\x80 surrogate", b"\x80\x80abc",
           b"\xf4\x90\x80\x80 too big", b"\xc0\xaf overlong"]
    proc = run_optforge("tokenize", "--no-bos", input=b"\n".join(raw) + b"\n", text=False, timeout=60)
    ids = [json.loads(line) for line in output_lines(proc.stdout.decode())]
    assert len(ids) == len(raw)
    for r, i in zip(raw, ids):
        # The ids stand for exactly the input bytes: HF turns them back into the same (replaced) text.
        assert hf_slow.decode(i, clean_up_tokenization_spaces=False) == r.decode("utf-8", "replace"), r
        assert "".join(hf_slow.convert_ids_to_tokens(i)) == "".join(hf_slow.byte_encoder[b] for b in r)


def test_answers_each_line_as_it_comes(optforge_bin):
    # Another program can drive `optforge tokenize` through a pipe, one request at a time.
    proc = subprocess.Popen([optforge_path(), "tokenize"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for text, ids in GOLDEN[:3]:
            proc.stdin.write(json.dumps({"text": text}) + "\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline()) == ids
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_plain_lines_and_json_lines(optforge_bin):
    lines = ['{"text": "Hello world"}', '{"text": 5}', '{"prompt": "x"}', "{not json", "Hello world", ""]
    out = output_lines(run_optforge("tokenize", input="\n".join(lines) + "\n").stdout)
    want = [[2, 31414, 232]] + encode_cli(['{"text": 5}', '{"prompt": "x"}', "{not json"]) + [[2, 31414, 232], [2]]
    assert [json.loads(x) for x in out] == want


def test_bad_tokenizer_files_are_named(tmp_path, optforge_bin):
    (tmp_path / "vocab.json").write_text('{"a": 0,')
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    assert_clean_error(run_optforge("tokenize", "--tokenizer", tmp_path, input="x\n", check=False), "vocab.json", "JSON")
    (tmp_path / "vocab.json").unlink()
    assert_clean_error(run_optforge("tokenize", "--tokenizer", tmp_path, input="x\n", check=False), "vocab.json")


def test_bad_decode_line_is_an_error(optforge_bin):
    assert_clean_error(run_optforge("tokenize", "--decode", input="[1, 2]\n[1, \"x\"]\n", check=False), "line 2")
