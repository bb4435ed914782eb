"""Writes the fuzz targets' seed corpora, tests/fuzz/corpus/<target>/, from files the reference
libraries write (torch.save, safetensors, numpy, transformers, tokenizers, the openai client), and
the real weights the HF folder target reads (tests/fuzz/data/hf_opt_tiny). The output is checked
in; rerun this after changing it:  .venv/bin/python tests/fuzz/make_seeds.py
Seeds of targets that read several files join them with a NUL byte, in the order the target's
header comment gives; a leading byte picks the mode (tokenizer) or the route (request)."""
import collections
import json
import os
import shutil
import sys
import tempfile
from argparse import Namespace

import httpx
import numpy as np
import openai
import safetensors.numpy
import safetensors.torch
import torch
import transformers
from tokenizers import ByteLevelBPETokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
DATA = os.path.join(HERE, "data")


def out_dir(target):
    d = os.path.join(CORPUS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(target_dir, name, data):
    with open(os.path.join(target_dir, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(path):
    with open(path, "rb") as f:
        return f.read()


def torch_seeds(tmp):
    d = out_dir("fuzz_torch_file")
    t = torch.arange(12, dtype=torch.float16).reshape(3, 4)
    cases = {
        "plain": {"a": t, "b": t.t(), "c": t[1:, 2:]},
        "dtypes": {str(dt): torch.ones(3, dtype=dt) for dt in (torch.float32, torch.bfloat16, torch.int64, torch.bool)},
        "nested": collections.OrderedDict(x=[1, 2.5, "s", None, (True, b"\x00\xff")], y={"z": t}),
        "metaseq": {"cfg": {"model": Namespace(arch="transformer_lm_megatron", decoder_layers=2)},
                    "model": {"flat_param_0": torch.zeros(7, dtype=torch.float16)}},
    }
    for name, obj in cases.items():
        torch.save(obj, os.path.join(d, name + ".pt"))
        torch.save(obj, os.path.join(d, name + "-legacy.pt"), _use_new_zipfile_serialization=False)


def safetensors_seeds(tmp):
    d = out_dir("fuzz_safetensors")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    safetensors.torch.save_file({"a": t, "b": t.to(torch.bfloat16), "c": t.to(torch.float16)[0],
                                 "i": torch.arange(5), "flag": torch.tensor([True, False])},
                                os.path.join(d, "dtypes.safetensors"), metadata={"format": "pt"})
    safetensors.torch.save_file({"scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4)}, os.path.join(d, "edge.safetensors"))
    safetensors.torch.save_file({"model.decoder.embed_tokens.weight": torch.zeros(8, 4, dtype=torch.float16)},
                                os.path.join(d, "hf-name.safetensors"), metadata={"format": "pt", "note": "x"})
    safetensors.numpy.save_file({"u8": np.arange(6, dtype=np.uint8).reshape(2, 3), "f64": np.ones(2)},
                                os.path.join(d, "numpy.safetensors"))


def npy_seeds(tmp):
    d = out_dir("fuzz_npy")
    a = np.arange(12, dtype=np.float16).reshape(3, 4)
    arrays = {"f2": a, "f4": a.astype(np.float32), "f8": np.ones(2), "i8": np.arange(3), "i1": np.arange(-2, 2, dtype=np.int8),
              "u1": np.arange(4, dtype=np.uint8), "b1": np.array([True, False]), "c8": np.ones(2, dtype=np.complex64),
              "fortran": np.asfortranarray(a), "scalar": np.float32(1.5), "empty": np.zeros((0, 3), dtype=np.float32),
              "big-endian": a.astype(">f4")}
    for name, x in arrays.items():
        np.save(os.path.join(d, name + ".npy"), x)
    with open(os.path.join(d, "v2.npy"), "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    with open(os.path.join(d, "v3.npy"), "wb") as f:
        np.lib.format.write_array(f, a, version=(3, 0))
    # alpa's numpy folder: one extension-less file per tensor.
    with open(os.path.join(d, "decoder.embed_tokens.weight"), "wb") as f:
        np.save(f, np.zeros((8, 4), dtype=np.float16))
    np.savez(os.path.join(d, "arrays.npz"), a=a, b=np.arange(3))
    np.savez(os.path.join(d, "alpa-tree.npz"), **{"params.transformers.encoder.0.attention.self.qvk_combined.kernel": a})
    np.savez_compressed(os.path.join(d, "compressed.npz"), a=a)


def tiny_opt(tmp):
    """A tiny OPT saved by transformers: config.json, a sharded and a single safetensors save."""
    cfg = transformers.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                                 max_position_embeddings=16, word_embed_proj_dim=16, torch_dtype="float16")
    torch.manual_seed(0)
    model = transformers.OPTForCausalLM(cfg).to(torch.float16)
    single, sharded = os.path.join(tmp, "single"), os.path.join(tmp, "sharded")
    model.save_pretrained(single, safe_serialization=True)
    model.save_pretrained(sharded, safe_serialization=True, max_shard_size="6KB")
    shards = sorted(f for f in os.listdir(sharded) if f.endswith(".safetensors"))
    assert len(shards) >= 2, shards
    data = os.path.join(DATA, "hf_opt_tiny")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    shutil.copy(os.path.join(single, "model.safetensors"), data)
    for s in shards:
        shutil.copy(os.path.join(sharded, s), data)
    return single, sharded


def hf_seeds(tmp):
    d = out_dir("fuzz_hf_folder")
    single, sharded = tiny_opt(tmp)
    config = read(os.path.join(single, "config.json"))
    index = read(os.path.join(sharded, "model.safetensors.index.json"))
    write(d, "single", config)
    write(d, "sharded", config + b"\0" + index)
    # Configs of published shapes (350m: projections, post-LN); they disagree with the weights.
    for name, kw in {"opt-350m": dict(hidden_size=1024, num_hidden_layers=24, ffn_dim=4096, num_attention_heads=16,
                                      word_embed_proj_dim=512, do_layer_norm_before=False),
                     "opt-125m": dict()}.items():
        path = os.path.join(tmp, name)
        transformers.OPTConfig(**kw).save_pretrained(path)
        write(d, name, read(os.path.join(path, "config.json")) + b"\0" + index)


def tokenizer_seeds(tmp):
    d = out_dir("fuzz_tokenizer")
    texts = ["Hello, world! It's 2024.", "  spaces\tand\nnewlines\r\n", "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 </s><pad>",
             "don't we'll I've they're", "\x00\x01 bytes \xff"]
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts * 20, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    tok.save_model(tmp)
    vocab, merges = read(os.path.join(tmp, "vocab.json")), read(os.path.join(tmp, "merges.txt"))
    tok.save(os.path.join(tmp, "tokenizer.json"))
    tokenizer_json = read(os.path.join(tmp, "tokenizer.json"))
    for i, text in enumerate(texts):
        raw = text.encode("utf-8", "surrogateescape")
        write(d, "vocab-merges-%d" % i, b"v" + vocab + b"\0" + merges + b"\0" + raw)
        write(d, "builtin-%d" % i, b"b" + raw)
        # Ready for a tokenizer.json loader (mode 'j': tokenizer.json \0 text).
        write(d, "tokenizer-json-%d" % i, b"j" + tokenizer_json + b"\0" + raw)
    write(d, "builtin-ids", b"b" + np.array([2, 31414, 6, 232, 328, 50118, 1, 50264, 50271, -1], dtype="<i4").tobytes())


def openai_bodies():
    """The bodies the openai client sends for completions.create, captured at its transport."""
    bodies = []

    def handler(request):
        bodies.append(request)
        return httpx.Response(200, json={"id": "cmpl-x", "object": "text_completion", "created": 0, "model": "opt-125m",
                                         "choices": [{"text": "", "index": 0, "finish_reason": "length", "logprobs": None}]})

    client = openai.OpenAI(api_key="sk-x", base_url="http://fuzz/v1", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    calls = [dict(prompt="Hello", max_tokens=5),
             dict(prompt=["a", "b c"], max_tokens=3, n=2, temperature=0.7, top_p=0.9, stop=["\n", "."], seed=1),
             dict(prompt=[2, 31414, 232], max_tokens=4, logprobs=5, echo=True),
             dict(prompt=[[2, 100], [2, 200]], max_tokens=2, presence_penalty=0.5, frequency_penalty=-0.5,
                  logit_bias={"50118": -100}, user="u", best_of=1),
             dict(prompt="x", max_tokens=0, echo=True, logprobs=0, suffix=""),
             dict(prompt="stream me", max_tokens=4, stream=False, extra_body={"top_k": 5, "min_tokens": 1, "ignore_eos": True})]
    for kw in calls:
        client.completions.create(model="opt-125m", **kw)
    stream = client.completions.create(model="opt-125m", prompt="s", max_tokens=3, stream=True, stream_options={"include_usage": True})
    try:
        for _ in stream:
            pass
    except Exception:
        pass  # the fake response is not an event stream; the request body is what we wanted
    return bodies


def chat_bodies():
    """The bodies the openai client sends for chat.completions.create, captured at its transport."""
    bodies = []

    def handler(request):
        bodies.append(request)
        return httpx.Response(200, json={"id": "chatcmpl-x", "object": "chat.completion", "created": 0,
                                         "model": "opt-125m", "choices": [
                                             {"index": 0, "finish_reason": "length", "logprobs": None,
                                              "message": {"role": "assistant", "content": ""}}]})

    client = openai.OpenAI(api_key="sk-x", base_url="http://fuzz/v1", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    calls = [dict(messages=[{"role": "user", "content": "Hello"}], max_tokens=5),
             dict(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Why?"}],
                  n=2, temperature=0.7, top_p=0.9, stop=["\n"], seed=1, logprobs=True, top_logprobs=3),
             dict(messages=[{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                  max_completion_tokens=3, presence_penalty=0.5, logit_bias={"50118": -100}, user="u")]
    for kw in calls:
        client.chat.completions.create(model="opt-125m", **kw)
    return bodies


def chat_request_seeds(d):
    for i, req in enumerate(chat_bodies()):
        write(d, "chat-%d" % i, b"c" + req.content)


def request_seeds(tmp):
    d = out_dir("fuzz_request")
    requests = openai_bodies()
    for i, req in enumerate(requests):
        write(d, "openai-%d" % i, b"o" + req.content)
        write(d, "engine-%d" % i, b"e" + req.content)
    # alpa's client (alpa/examples/llm_serving/client.py) posts these with requests' json=, i.e.
    # json.dumps with its default separators.
    alpa_completions = [{"model": "default", "prompt": "Paris is the capital city of", "min_tokens": 0, "max_tokens": 32,
                         "temperature": 1.0, "top_p": 1.0, "echo": True, "best_of": 1, "n": 1},
                        {"prompt": ["a\r\nb", "c"], "max_tokens": 8, "temperature": 0.0, "top_p": 0.55, "n": 2, "stop": "\n"},
                        {"prompt": [[2, 100, 200]], "max_tokens": 4000, "seed": 7, "top_k": 0}]
    alpa_logprobs = [{"prompt": "The sky is", "top_k": 10, "cache_id": None},
                     {"prompt": [[2, 100], [2, 300]], "top_k": 3},
                     {"prompt": ["one two", "three"], "top_k": 100000, "cache_id": "3f2a9c1e-0000-4000-8000-000000000000"}]
    for i, body in enumerate(alpa_completions):
        write(d, "alpa-completions-%d" % i, b"a" + json.dumps(body).encode())
    for i, body in enumerate(alpa_logprobs):
        write(d, "alpa-logprobs-%d" % i, b"l" + json.dumps(body).encode())
    chat_request_seeds(d)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for gen in (torch_seeds, safetensors_seeds, npy_seeds, hf_seeds, tokenizer_seeds, request_seeds):
            sub = os.path.join(tmp, gen.__name__)
            os.makedirs(sub)
            gen(sub)
    total = sum(os.path.getsize(os.path.join(r, f)) for top in (CORPUS, DATA) for r, _, fs in os.walk(top) for f in fs)
    print("seeds and data: %d bytes" % total)
    if total > 512 * 1024:
        sys.exit("seed corpora too large")


if __name__ == "__main__":
    main()
