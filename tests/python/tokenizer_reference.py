"""What the tokenizer tests share: OPT's GPT-2 vocabulary files (data/opt-tokenizer), the
references built from them (transformers' slow GPT2Tokenizer with facebook/opt-*'s settings, the raw
`tokenizers` byte-level BPE), each id's bytes and its name in logprobs (docs/serving.md), the
generated test corpora, and `optforge tokenize` run on a list of texts."""
import json
import random
import unicodedata

import pytest
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

from conftest import ROOT, run_optforge

TOK_DIR = ROOT / "data" / "opt-tokenizer"
VOCAB, MERGES = str(TOK_DIR / "vocab.json"), str(TOK_DIR / "merges.txt")
# Literal special-token strings: HF's slow tokenizer splits them out, optforge keeps them as text
# with --no-parse-special (tested on their own), so the general corpus avoids them.
SPECIAL_LITERALS = ("</s>", "<pad>")


def opt_slow_tokenizer():
    """transformers' GPT2Tokenizer (pure Python, the exact reference) with facebook/opt-*'s
    settings: </s> is bos, eos and unk; <pad> pads; add_bos_token prepends </s> (id 2)."""
    from transformers import GPT2Tokenizer
    return GPT2Tokenizer(VOCAB, MERGES, bos_token="</s>", eos_token="</s>", unk_token="</s>",
                         pad_token="<pad>", add_bos_token=True)


def raw_bpe():
    """The Rust `tokenizers` byte-level BPE of the same files: no specials, no prefix space."""
    from tokenizers import ByteLevelBPETokenizer
    return ByteLevelBPETokenizer.from_file(VOCAB, MERGES)


# ---------------------------------------------------------------- corpora -------------------------

# OPT's special ids and their vocab strings.
SPECIAL_IDS = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}


def token_bytes():
    """id -> the token's bytes (GPT-2's byte-to-unicode map undone); special ids -> their vocab
    string; ids past the vocabulary -> b""."""
    u2b = {u: b for b, u in bytes_to_unicode().items()}
    vocab = json.loads((TOK_DIR / "vocab.json").read_text(encoding="utf-8"))
    table = {i: bytes(u2b[c] for c in tok) for tok, i in vocab.items() if i not in SPECIAL_IDS}
    table.update({i: s.encode() for i, s in SPECIAL_IDS.items()})
    return table


def label(tid, table):
    """docs/serving.md §Logprobs: token names: the vocab string of a special id, the text of
    well-formed UTF-8, `bytes:` + Python's repr otherwise, `token_id:N` without bytes."""
    if tid in SPECIAL_IDS:
        return SPECIAL_IDS[tid]
    b = table.get(tid, b"")
    if not b:
        return f"token_id:{tid}"
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + repr(b)[2:-1].replace("\\'", "'")


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


@pytest.fixture(scope="session")
def corpus():
    """make_corpus(), built once per test session."""
    return make_corpus()


SPECIALS = ["</s>", "<pad>"]
NEAR = ["</s", "<pad", "/s>", "pad>", "<s>", "<unk>", "<</s>>", "<<pad>>", "</s>>", "<</s", "</S>", "<PAD>"]
AROUND = [" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "é", "你好", "🤗", "'s", "!", "1", ""]


def special_corpus(n=3000, seed=5):
    """Strings with "</s>" and "<pad>" anywhere: at the start and end, repeated, glued to words,
    next to spaces, newlines, unicode, contractions and near-misses like "</s" or "<unk>"."""
    rng = random.Random(seed)
    out = ["a</s>b", "x <pad>", "</s>", "<pad>", "</s></s>", "<pad><pad>", " </s> ", "\n</s>\n", "a </s> b",
           "</s>Hello", "Hello</s>", "<</s>>", "</s><pad></s>", "  <pad>  ", "é</s>é", "'s</s>'s"]
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(AROUND) + rng.choice(SPECIALS) * rng.choice([1, 1, 2, 3]) + rng.choice(AROUND))
            elif r < 0.45:
                parts.append(rng.choice(NEAR))
            else:
                parts.append(_fragment(rng))
        out.append(rng.choice(["", " "]).join(parts))
    return out


# ---------------------------------------------------------------- running optforge ----------------

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
    """`optforge tokenize ARGS` on `texts` (through as_input_lines): one id list per text."""
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

