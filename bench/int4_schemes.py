"""The measurement behind the int4 scheme (docs/inference.md, "Symmetric or zero point"): four
group-of-32 schemes with f16 scales applied to the matmul weights of test_quantize.py's two random
models, each compared with the f32 model in transformers over 64 x 128 random tokens (relative
weight MSE, mean KL(f32 || quantized), top-1 agreement). numpy + transformers only; no optforge.
usage: .venv/bin/python bench/int4_schemes.py
"""
import copy
import pathlib
import sys

import numpy as np
import torch
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "python"))
from hf_reference import random_opt
from quant_reference import is_matmul
G = 32
def groups(w):
    N, K = w.shape; P = (-K) % G
    return np.pad(w, ((0, 0), (0, P))).reshape(N, -1, G), K
def sym7(w):
    g, K = groups(w); s = (np.abs(g).max(-1) / np.float32(7)).astype(np.float16).astype(np.float32)
    safe = np.where(s == 0, 1, s)[..., None]; q = np.clip(np.rint(g / safe), -7, 7) * (s[..., None] != 0)
    return (q * s[..., None]).reshape(w.shape[0], -1)[:, :K]
def sym8(w):
    g, K = groups(w); i = np.abs(g).argmax(-1); m = np.take_along_axis(g, i[..., None], -1)[..., 0]
    s = (m / np.float32(-8)).astype(np.float16).astype(np.float32)
    safe = np.where(s == 0, 1, s)[..., None]; q = np.clip(np.rint(g / safe), -8, 7) * (s[..., None] != 0)
    return (q * s[..., None]).reshape(w.shape[0], -1)[:, :K]
def asym(w, zbits):
    g, K = groups(w); lo = g.min(-1); hi = g.max(-1)
    s = ((hi - lo) / np.float32(15)).astype(np.float16).astype(np.float32); safe = np.where(s == 0, 1, s)
    if zbits == 4:
        z = np.clip(np.rint(-lo / safe), 0, 15); q = np.clip(np.rint(g / safe[..., None]) + z[..., None], 0, 15)
        d = (q - z[..., None]) * s[..., None]
    else:
        m = lo.astype(np.float16).astype(np.float32); q = np.clip(np.rint((g - m[..., None]) / safe[..., None]), 0, 15)
        d = q * s[..., None] + m[..., None]
    return d.reshape(w.shape[0], -1)[:, :K]
SCH = {"sym [-7,7] f16 scale (4.5 b/w)": sym7, "sym [-8,7] f16 scale (4.5 b/w)": sym8,
       "asym [0,15] f16 scale + u4 zero (4.625 b/w)": lambda w: asym(w, 4),
       "asym [0,15] f16 scale + f16 min (5 b/w)": lambda w: asym(w, 16)}
ARCHS = {"pre_ln": dict(hidden_size=52, num_attention_heads=4, ffn_dim=100, num_hidden_layers=3, word_embed_proj_dim=52, do_layer_norm_before=True),
         "post_ln_350m": dict(hidden_size=64, num_attention_heads=4, ffn_dim=256, num_hidden_layers=3, word_embed_proj_dim=40, do_layer_norm_before=False)}
V = 1003
for arch, cfg in ARCHS.items():
    model = random_opt(21, vocab_size=V, max_position_embeddings=136, dropout=0.0, attention_dropout=0.0, init_std=0.1, pad_token_id=1, bos_token_id=2, eos_token_id=2, **cfg)
    g = torch.Generator().manual_seed(7)
    seqs = torch.tensor([[2] + torch.randint(3, V, (127,), generator=g).tolist() for _ in range(64)])
    with torch.no_grad(): ref = model(seqs).logits.double().log_softmax(-1)
    for name, f in SCH.items():
        m = copy.deepcopy(model); err = []; 
        with torch.no_grad():
            for n, p in m.named_parameters():
                if is_matmul(n):
                    w = p.numpy(); d = f(w); err.append(((d - w) ** 2).mean() / (w ** 2).mean()); p.copy_(torch.from_numpy(d.astype(np.float32)))
            o = m(seqs).logits.double().log_softmax(-1)
        kl = float((ref.exp() * (ref - o)).sum(-1).mean()); t1 = float((ref.argmax(-1) == o.argmax(-1)).double().mean())
        print(f"{arch:13s} {name:45s} rel.MSE {np.mean(err):.3e}  KL {kl:.3e}  top1 {t1:.4f}")
