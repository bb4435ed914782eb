"""A folder that ships only a tokenizer.json (the `tokenizers` library's one-file form, with its
own vocabulary and merges): optforge reads it and tokenizes exactly as `tokenizers` does, added
tokens included; transformers' PreTrainedTokenizerFast checks the tokenizer_config.json on top.
A tokenizer.json of another model type is refused with an error naming the type."""
import json

import pytest
from tokenizers import AddedToken, ByteLevelBPETokenizer, Tokenizer, models, pre_tokenizers

from conftest import assert_clean_error, run_optforge
from tokenizer_reference import corpus, encode_cli, special_corpus  # noqa: F401 (corpus: a fixture)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    """A byte-level BPE trained here (its vocabulary is not OPT's), with added tokens: specials,
    one that swallows the spaces on its left (like RoBERTa's <mask>), a plain added word."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus[::3] + special_corpus(500), vocab_size=3000, min_frequency=2,
                            special_tokens=SPECIALS, show_progress=False)
    bpe.add_special_tokens([AddedToken("<mask>", lstrip=True)])
    bpe.add_tokens([AddedToken("[[note]]", rstrip=True, normalized=False)])
    d = tmp_path_factory.mktemp("tokjson")
    bpe.save(str(d / "tokenizer.json"))
    assert not (d / "vocab.json").exists() and not (d / "merges.txt").exists()
    return d, Tokenizer.from_file(str(d / "tokenizer.json"))


def test_matches_tokenizers_on_the_corpus(trained, corpus, optforge_bin):
    d, ref = trained
    assert ref.get_vocab_size() > 2500 and ref.token_to_id("Ġthe") != 5  # its own vocabulary
    got = encode_cli(corpus, "--tokenizer", d, "--no-bos")
    want = [e.ids for e in ref.encode_batch(corpus)]
    bad = [(s, g, w) for s, g, w in zip(corpus, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(corpus)} differ, e.g. {bad[:3]}"


def test_added_tokens_match_tokenizers(trained, optforge_bin):
    d, ref = trained
    texts = special_corpus(1500, seed=9)
    texts += ["a <mask> b", "a   <mask>", "\n<mask>x", "[[note]]  x", "x [[note]]\n y", "<mask><mask>  [[note]]",
              "<s>x<unk></s><pad>", " <mask> [[note]] </s> "]
    got = encode_cli(texts, "--tokenizer", d, "--no-bos")
    want = [e.ids for e in ref.encode_batch(texts)]
    bad = [(s, g, w) for s, g, w in zip(texts, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]}"
    # BOS is "</s>", as in OPT: the vocabulary's id for it, not OPT's 2.
    assert encode_cli(["x"], "--tokenizer", d)[0][0] == ref.token_to_id("</s>")
    # Decoding drops the special added tokens, keeps the plain one.
    ids = ref.encode("a <mask> [[note]] b</s>").ids
    out = run_optforge("tokenize", "--tokenizer", d, "--decode", input=json.dumps(ids) + "\n").stdout
    assert json.loads(out) == ref.decode(ids, skip_special_tokens=True)


def test_tokenizer_config_adds_special_tokens(trained, tmp_path, optforge_bin):
    from transformers import PreTrainedTokenizerFast
    src, _ = trained
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    # "the" becomes a special token through the config alone, as transformers reads it.
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
        "additional_special_tokens": ["the"], "tokenizer_class": "PreTrainedTokenizerFast"}))
    hf = PreTrainedTokenizerFast.from_pretrained(d)
    texts = ["the other theme", "in the end", "<s>the</s>", "bathe the  the"] + special_corpus(300, seed=4)
    got = encode_cli(texts, "--tokenizer", d, "--no-bos")
    want = [hf(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert got == want
    assert encode_cli(["x"], "--tokenizer", d)[0][0] == hf.convert_tokens_to_ids("<s>")


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram", "WordLevel"])
def test_other_model_types_are_refused_by_name(kind, tmp_path, optforge_bin):
    vocab = {"[UNK]": 0, "a": 1, "b": 2}
    model = {"WordPiece": lambda: models.WordPiece(vocab, unk_token="[UNK]"),
             "Unigram": lambda: models.Unigram([("[UNK]", 0.0), ("a", -1.0), ("b", -2.0)], 0),
             "WordLevel": lambda: models.WordLevel(vocab, unk_token="[UNK]")}[kind]()
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    assert_clean_error(run_optforge("tokenize", "--tokenizer", tmp_path, input="a b\n", check=False),
                       kind, "tokenizer.json", "BPE")


def test_bpe_without_byte_level_is_refused(tmp_path, optforge_bin):
    tok = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    assert_clean_error(run_optforge("tokenize", "--tokenizer", tmp_path, input="ab\n", check=False),
                       "Whitespace", "tokenizer.json")
