"""Reference figures for bench/inference.sh, all from torch on the CPU with the same threads.

  inference_ref.py floor THREADS                      copy bandwidth and f32 GEMM peak, as JSON
  inference_ref.py torch MODEL.pt DTYPE THREADS PROMPT DECODE
      transformers' OPTForCausalLM on an optforge demo-model checkpoint (metaseq names, renamed
      as in docs/spec-checkpoints.md §Hugging Face layout): prompt tokens/s for a PROMPT-token prefill and
      decode tokens/s at batch 1 and 8 (DECODE greedy steps through past_key_values), as JSON.
  inference_ref.py ct2 MODEL.pt QUANTIZATION THREADS PROMPT DECODE
      CTranslate2's Generator on the same checkpoint (through transformers and CTranslate2's own
      converter, with QUANTIZATION float32|bfloat16|int8|int8_bfloat16 as its compute type):
      prompt tokens/s (the prompt forwarded as a prefix, one token generated) and decode
      tokens/s at batch 1, 8 and 32 (DECODE greedy steps: the time of DECODE + 1 steps less that
      of one), as JSON.
"""
import json
import sys
import time

import torch


def best_of(n, fn):
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def floor(threads):
    torch.set_num_threads(threads)
    n = 1 << 28  # 1 GiB of f32: far beyond the caches
    src, dst = torch.ones(n), torch.empty(n)
    dst.copy_(src)
    t = best_of(5, lambda: dst.copy_(src))
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    g = best_of(5, lambda: torch.mm(a, b))
    # A copy reads and writes every byte: the traffic is twice the size.
    print(json.dumps({"copy_gbps": 2 * n * 4 / t / 1e9, "sgemm_gflops": 2 * 2048 ** 3 / g / 1e9}))


def load(path, dtype):
    from transformers import OPTConfig, OPTForCausalLM
    ck = torch.load(path)
    m = ck["cfg"]["model"]
    cfg = OPTConfig(vocab_size=ck["model"]["decoder.embed_tokens.weight"].shape[0], hidden_size=m.decoder_embed_dim,
                    num_attention_heads=m.decoder_attention_heads, ffn_dim=m.decoder_ffn_embed_dim,
                    num_hidden_layers=m.decoder_layers, max_position_embeddings=m.max_target_positions,
                    word_embed_proj_dim=m.decoder_input_dim, do_layer_norm_before=m.decoder_normalize_before)
    sd = {}
    for k, v in ck["model"].items():
        if k == "decoder.version":
            continue
        k = k.replace("project_in_dim", "project_in").replace("project_out_dim", "project_out")
        k = k.replace("decoder.layer_norm.", "decoder.final_layer_norm.")
        sd["model." + k] = v
    sd["lm_head.weight"] = sd["model.decoder.embed_tokens.weight"]
    model = OPTForCausalLM(cfg).to(dtype).eval()
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()})
    return model


def run_torch(path, dtype_name, threads, prompt_len, decode):
    torch.set_num_threads(threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype_name]
    model = load(path, dtype)
    vocab = model.config.vocab_size
    prompt = torch.tensor([[2] + [(i * 7919) % (vocab - 10) + 3 for i in range(prompt_len - 1)]])
    out = {}
    with torch.no_grad():
        def prefill():
            h = model.model(prompt).last_hidden_state   # only the last position needs the head
            return model.lm_head(h[:, -1])
        prefill()
        out["prompt_tps"] = prompt_len / best_of(2, prefill)
        for batch in (1, 8):
            ids = prompt[:, :16].repeat(batch, 1)

            def gen():
                o = model(ids, use_cache=True)
                past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
                t0 = time.perf_counter()
                for _ in range(decode):
                    o = model(nxt, past_key_values=past, use_cache=True)
                    past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
                return time.perf_counter() - t0
            gen()
            out[f"decode_b{batch}_tps"] = batch * decode / min(gen() for _ in range(2))
    print(json.dumps(out))


def run_ct2(path, quantization, threads, prompt_len, decode):
    import pathlib
    import tempfile

    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    model = load(path, torch.float32)
    vocab = model.config.vocab_size
    with tempfile.TemporaryDirectory() as tmp:
        hf, out = pathlib.Path(tmp) / "hf", pathlib.Path(tmp) / "ct2"
        model.save_pretrained(hf, safe_serialization=True)
        del model
        # The converter takes its vocabulary from a tokenizer's files: one made-up token per id.
        names = ["<s>", "<pad>", "</s>", "<unk>"] + [f"t{i}" for i in range(4, vocab)]
        (hf / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(names)}))
        (hf / "merges.txt").write_text("#version: 0.2\n")
        TransformersConverter(str(hf), load_as_float16=False).convert(str(out), quantization=quantization)
        gen = ctranslate2.Generator(str(out), device="cpu", compute_type=quantization, inter_threads=1,
                                    intra_threads=threads)
        ids = [2] + [(i * 7919) % (vocab - 10) + 3 for i in range(prompt_len - 1)]
        prompt = [names[i] for i in ids]

        def run(batch, tokens, steps):
            return lambda: gen.generate_batch([tokens] * batch, max_length=steps, min_length=steps,
                                              include_prompt_in_result=False)
        run(1, prompt, 1)()
        out_json = {"prompt_tps": prompt_len / best_of(2, run(1, prompt, 1))}
        for batch in (1, 8, 32):
            one = best_of(2, run(batch, prompt[:16], 1))
            out_json[f"decode_b{batch}_tps"] = batch * decode / (best_of(2, run(batch, prompt[:16], decode + 1)) - one)
    print(json.dumps(out_json))


if __name__ == "__main__":
    if sys.argv[1] == "floor":
        floor(int(sys.argv[2]))
    elif sys.argv[1] == "ct2":
        run_ct2(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        run_torch(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
