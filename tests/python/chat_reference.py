"""What the chat and best_of tests compare against: a small random OPT model built by transformers
(full OPT vocabulary, so the built-in tokenizer applies), transformers' slow GPT-2 tokenizer with
OPT's settings, transformers' log-softmax and greedy tokens, token bytes from the vocabulary files,
and docs/serving.md's chat-template rule written again in Python (jinja2, which
tokenizer.apply_chat_template needs, is not in the reference environment)."""
import torch

from hf_reference import random_opt
from tokenizer_reference import SPECIAL_IDS as SPECIALS, label, opt_slow_tokenizer, token_bytes  # noqa: F401 (re-exported)

VOCAB = 50272   # the model's embedding rows (the tokenizer's 50265 ids and 7 rows of padding)

# docs/serving.md §Chat templates: the default template, as the file format writes it.
DEFAULT_TEMPLATE = {
    "system": {"prefix": "System: ", "suffix": "\n"},
    "user": {"prefix": "User: ", "suffix": "\n"},
    "assistant": {"prefix": "Assistant: ", "suffix": "\n"},
    "generation_prompt": "Assistant:",
    "stop": ["\nUser:"],
}


def build_model(path, seed=5):
    """A random 2-layer OPT (transformers), saved as safetensors in `path`; returns the model."""
    model = random_opt(seed, vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=32,
                       do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, init_std=0.2,
                       pad_token_id=1, bos_token_id=2, eos_token_id=2)
    model.save_pretrained(path, safe_serialization=True)
    return model


def render(messages, template=DEFAULT_TEMPLATE):
    """docs/serving.md's rule: per message its role's prefix, the content (text parts joined),
    its role's suffix ("developer" as "system"); then the generation prompt."""
    out = ""
    for m in messages:
        role = "system" if m["role"] == "developer" else m["role"]
        content = m["content"] if isinstance(m["content"], str) else "".join(p["text"] for p in m["content"])
        out += template[role]["prefix"] + content + template[role]["suffix"]
    return out + template["generation_prompt"]


def prompt_ids(text):
    """transformers' OPT tokenization: </s> first, as /v1/completions encodes a text prompt."""
    return opt_slow_tokenizer().encode(text)


def label_to_id(table):
    return {label(i, table): i for i in range(VOCAB)}


def text_of(ids, table, stops=()):
    """The reply text: the tokens' bytes decoded as HF's decode does (errors="replace", special
    ids skipped), cut before the first stop string."""
    text = b"".join(b"" if i in SPECIALS else table.get(i, b"") for i in ids).decode("utf-8", errors="replace")
    cut = min([text.find(s) for s in stops if s in text], default=len(text))
    return text[:cut]


def log_softmax(model, ids):
    """[len(ids), VOCAB] float64: transformers' log-softmax of the logits at every position."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)


def greedy(model, ids, steps, eos=2):
    """transformers' greedy ids after `ids` (the </s> that ends them not included), and the
    smallest gap between the top two logits on the way (a near-tie would make the test fragile)."""
    out, gap = [], float("inf")
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids + out])).logits[0, -1]
            top2 = torch.topk(logits, 2).values
            gap = min(gap, float(top2[0] - top2[1]))
            nxt = int(torch.argmax(logits))
            if nxt == eos:
                break
            out.append(nxt)
    return out, gap
