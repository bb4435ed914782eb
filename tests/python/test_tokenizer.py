"""`optforge tokenize` against Hugging Face's GPT-2 tokenizers built from the same vocab.json and
merges.txt: the slow `GPT2Tokenizer` (pure Python, the exact reference) and the Rust `tokenizers`
BPE. OPT's convention is checked on the reference itself: `</s>` (id 2) goes first."""
import json
import os
import random
import subprocess
import time
import unicodedata
from pathlib import Path

import pytest

from conftest import ROOT, optforge_path, run_optforge

TOK_DIR = ROOT / "data" / "opt-tokenizer"
VOCAB, MERGES = str(TOK_DIR / "vocab.json"), str(TOK_DIR / "merges.txt")
BOS = 2
# Literal special-token strings: HF's slow tokenizer splits them out, optforge keeps them as text
# (tested on their own below), so the general corpus avoids them.
SPECIAL_LITERALS = ("</s>", "<pad>")


# ---------------------------------------------------------------- corpus --------------------------

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from "
         "or one had by word but not what all were we when your can said there use an each which she "
         "do how their if will up other about out many then them these so some her would make like "
         "Hello World Paris OPT Transformer tokenization café naïve résumé façade jalapeño Straße "
         "Ångström smørrebrød Œuvre Łódź ǅemal ﬁnance").split()
CONTRACTIONS = ["don't", "I'LL", "she's", "we're", "they've", "I'm", "you'd", "it'll", "'s", "'S",
                "HE'S", "it’s", "''", "'ll've", "o'clock", "rock'n'roll", "'", "'d'd", "y'all'd"]
PUNCT = ["!", "!!!", "...", "?!", "---", "((", "[]{}", "@#$%^&*", "«»", "“”", "—", "…", "<<>>", "::",
         "//", "\\", "~", "`", "|", "§¶", "©®™", "€$£¥", "½¾", "+-=", "<s>", "</", "/s>", "<unk>", "_"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\x0b", "\x0c", "\u00a0",
          "\u2003", "\u3000", "\u2028", "\u2029", "\u0085", "\u202f", "\u205f", "\u1680", "\u180e",
          "\u200b", " \n ", "\n \n", " \t ", "\u2009\u2009"]
CONTROLS = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x1c", "\x1d", "\x1e", "\x1f", "\x80", "\x9f",
            "\xad", "\ufeff", "\u200d", "\u200e", "\ufffd", "\U000e0001"]
EMOJI = ["🤗", "😀", "🙏🏽", "👍🏻", "👍🏿", "👨\u200d👩\u200d👧\u200d👦", "👩🏽\u200d💻", "🏳️\u200d🌈",
         "❤️", "1️⃣", "🇫🇷", "🇯🇵🇺🇸", "☃", "✔︎", "🧑🏾\u200d🤝\u200d🧑🏻", "😶\u200d🌫️", "🫶"]
NUMBERS = ["0", "7", "42", "2023", "3.14159", "1,000,000", "007", "1e-9", "٣٤٥", "०१२", "²³", "½",
           "Ⅻ", "１２３", "๓", "12345678901234567890", "1st", "-5", "0x1F", "v1.2.3"]
RANGES = {  # (first, last) codepoints of letters and marks, by script
    "cjk": (0x4E00, 0x9FA5), "hiragana": (0x3041, 0x3096), "katakana": (0x30A1, 0x30FA),
    "hangul": (0xAC00, 0xD7A3), "arabic": (0x0621, 0x064A), "arabic_marks": (0x064B, 0x0652),
    "devanagari": (0x0905, 0x0939), "devanagari_signs": (0x093E, 0x094D), "cyrillic": (0x0410, 0x044F),
    "greek": (0x0391, 0x03C9), "thai": (0x0E01, 0x0E3A), "hebrew": (0x05D0, 0x05EA),
    "combining": (0x0300, 0x036F), "latin_ext": (0x0100, 0x024F), "ethiopic": (0x1200, 0x1248),
    "cjk_ext_b": (0x20000, 0x2A6DF),
}


def _assigned(cp):
    # Python 3.11's unicodedata is Unicode 14.0, the version of PCRE2 10.42's tables: characters
    # assigned later would test the two libraries' Unicode versions rather than the tokenizer.
    return not (0xD800 <= cp <= 0xDFFF) and unicodedata.category(chr(cp)) != "Cn"


def _run_of(rng, lo, hi, n):
    return "".join(chr(rng.randint(lo, hi)) for _ in range(n))


def _fragment(rng):
    kind = rng.random()
    if kind < 0.22:
        w = rng.choice(WORDS)
        return rng.choice([w, w.upper(), w.capitalize(), w.lower()])
    if kind < 0.30:
        return rng.choice(CONTRACTIONS)
    if kind < 0.38:
        return rng.choice(PUNCT) * rng.choice([1, 1, 2])
    if kind < 0.52:
        return rng.choice(SPACES) * rng.choice([1, 1, 1, 2, 3])
    if kind < 0.58:
        return rng.choice(NUMBERS)
    if kind < 0.62:
        return rng.choice(CONTROLS)
    if kind < 0.68:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if kind < 0.85:
        lo, hi = RANGES[rng.choice(sorted(RANGES))]
        return _run_of(rng, lo, hi, rng.randint(1, 6))
    if kind < 0.90:  # letters with stacked combining marks
        return "".join(rng.choice("aeiouAEIOUnxz") + _run_of(rng, 0x300, 0x36F, rng.randint(0, 3))
                       for _ in range(rng.randint(1, 4)))
    if kind < 0.97:  # any assigned codepoint, all planes
        out = []
        while len(out) < rng.randint(1, 4):
            cp = rng.randint(0x20, 0x10FFFF) if rng.random() < 0.3 else rng.randint(0x20, 0xFFFF)
            if _assigned(cp):
                out.append(chr(cp))
        return "".join(out)
    # long runs: longer than optforge's cache limit, and whitespace runs before words
    return rng.choice([lambda: "a" * rng.randint(100, 600),
                       lambda: "".join(rng.choice("abcdefghij") for _ in range(rng.randint(200, 400))),
                       lambda: " " * rng.randint(5, 300) + "x",
                       lambda: "9" * rng.randint(50, 400),
                       lambda: "!?" * rng.randint(50, 200),
                       lambda: _run_of(rng, 0x4E00, 0x9FA5, rng.randint(100, 200))])()


def make_corpus(n=12000, seed=20240607):
    """`n` deterministic strings mixing scripts, emoji, whitespace, digits, contractions, controls."""
    rng = random.Random(seed)
    corpus = ["", " ", "\n", "Hello world", "a  b", "trailing  ", "I'm HE'S", " 你好", "émoji 🤗"]
    while len(corpus) < n:
        sep = rng.choice(["", " ", " ", ""])
        s = sep.join(_fragment(rng) for _ in range(rng.randint(1, 12)))
        if not any(lit in s for lit in SPECIAL_LITERALS):
            corpus.append(s)
    return corpus


# ---------------------------------------------------------------- helpers -------------------------

@pytest.fixture(scope="module")
def hf_slow():
    from transformers import GPT2Tokenizer
    # facebook/opt-*'s settings: </s> is bos, eos and unk; <pad> pads; add_bos_token prepends </s>.
    return GPT2Tokenizer(VOCAB, MERGES, bos_token="</s>", eos_token="</s>", unk_token="</s>",
                         pad_token="<pad>", add_bos_token=True)


@pytest.fixture(scope="module")
def hf_fast():
    from tokenizers import ByteLevelBPETokenizer
    return ByteLevelBPETokenizer.from_file(VOCAB, MERGES)  # raw BPE: no specials, no prefix space


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


def as_input_lines(texts, rng=None):
    """One line per text: plain where that is unambiguous, else a JSON object (both ASCII-escaped
    and raw UTF-8, to exercise surrogate pairs and raw bytes in the JSON parser)."""
    rng = rng or random.Random(1)
    lines = []
    for s in texts:
        plain_ok = "\n" not in s and not s.lstrip(" \t").startswith("{")
        if plain_ok and rng.random() < 0.5:
            lines.append(s)
        else:
            lines.append(json.dumps({"text": s}, ensure_ascii=rng.random() < 0.5))
    return "\n".join(lines) + "\n"


def encode_cli(texts, *args):
    out = output_lines(run_optforge("tokenize", *args, input=as_input_lines(texts)).stdout)
    assert len(out) == len(texts)
    return [json.loads(line) for line in out]


def output_lines(stdout):
    # Not splitlines(): decoded text may hold U+2028, U+0085 and friends, which it also splits on.
    assert stdout.endswith("\n") or not stdout
    return stdout.split("\n")[:-1]


def first_mismatches(texts, got, want, limit=5):
    bad = [(s, g, w) for s, g, w in zip(texts, got, want) if g != w]
    return len(bad), bad[:limit]


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


def test_special_token_text_is_plain_text(hf_fast, hf_slow, optforge_bin):
    # With --no-parse-special (for untrusted text) optforge encodes "</s>" as ordinary text, like
    # metaseq and the raw `tokenizers` BPE, where HF's tokenizers turn it into id 2 (the default
    # now, tested in test_special_tokens.py).
    texts = ["a </s> b", "<pad><pad>", "</s>", "<s>x<unk>", "<|endoftext|>"]
    got = encode_cli(texts, "--no-parse-special")
    assert got == [[BOS] + e.ids for e in hf_fast.encode_batch(texts)]
    assert 2 not in got[0][1:]
    assert hf_slow.encode("a </s> b")[1:] != got[0][1:]


def test_invalid_utf8_is_kept_byte_for_byte(hf_slow, optforge_bin):
    raw = [b"ok \xff\xfe bytes", b"\xc3", b"caf\xc3\xa9 \xe4\xbd", b"\xed\xa0\x80 surrogate", b"\x80\x80abc",
           b"\xf4\x90\x80\x80 too big", b"\xc0\xaf overlong"]
    proc = subprocess.run([optforge_path(), "tokenize", "--no-bos"], input=b"\n".join(raw) + b"\n",
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
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
    proc = run_optforge("tokenize", "--tokenizer", tmp_path, input="x\n", check=False)
    assert proc.returncode == 1 and "vocab.json" in proc.stderr and "JSON" in proc.stderr, proc.stderr
    (tmp_path / "vocab.json").unlink()
    proc = run_optforge("tokenize", "--tokenizer", tmp_path, input="x\n", check=False)
    assert proc.returncode == 1 and "vocab.json" in proc.stderr, proc.stderr


def test_bad_decode_line_is_an_error(optforge_bin):
    proc = run_optforge("tokenize", "--decode", input="[1, 2]\n[1, \"x\"]\n", check=False)
    assert proc.returncode == 1 and "line 2" in proc.stderr, proc.stderr
