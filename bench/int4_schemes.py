"""The measurement behind the int4 scheme (docs/inference.md, "Symmetric or zero point"): four
group-of-32 schemes with f16 scales applied to the matmul weights of test_quantize.py's two random
models, each compared with the f32 model in transformers over 64 x 128 random tokens (relative
weight MSE, mean KL(f32 || quantized) in nats, top-1 agreement). numpy + transformers only.
usage: .venv/bin/python bench/int4_schemes.py
"""
import copy
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "python"))
from hf_reference import random_opt  # noqa: E402
from quant_reference import is_matmul  # noqa: E402
from test_quantize import ARCHS, N_SEQ, SEQ_LEN, VOCAB, kl_and_top1, sequences  # noqa: E402

G = 32


def groups(w):
    """w [N, K] -> zero-padded groups [N, ceil(K / 32), 32] and K."""
    n, k = w.shape
    return np.pad(w, ((0, 0), (0, (-k) % G))).reshape(n, -1, G), k


def ungroup(d, n, k):
    return d.reshape(n, -1)[:, :k]


def f16(x):
    return x.astype(np.float16).astype(np.float32)


def symmetric(w, levels_down):
    """[-8, 7] with scale m / -8 (levels_down 8, optforge's), or [-7, 7] with amax / 7 (7)."""
    g, k = groups(w)
    if levels_down == 8:
        m = np.take_along_axis(g, np.abs(g).argmax(-1)[..., None], -1)[..., 0]
        s = f16(m / np.float32(-8))
    else:
        s = f16(np.abs(g).max(-1) / np.float32(7))
    safe = np.where(s == 0, 1, s)[..., None]
    q = np.clip(np.rint(g / safe), -levels_down, 7) * (s[..., None] != 0)
    return ungroup(q * s[..., None], w.shape[0], k)


def asymmetric(w, f16_min):
    """[0, 15] with scale (max - min) / 15 and a 4-bit zero point, or (f16_min) an f16 minimum."""
    g, k = groups(w)
    lo, hi = g.min(-1), g.max(-1)
    s = f16((hi - lo) / np.float32(15))
    safe = np.where(s == 0, 1, s)
    if f16_min:
        m = f16(lo)
        q = np.clip(np.rint((g - m[..., None]) / safe[..., None]), 0, 15)
        d = q * s[..., None] + m[..., None]
    else:
        z = np.clip(np.rint(-lo / safe), 0, 15)
        q = np.clip(np.rint(g / safe[..., None]) + z[..., None], 0, 15)
        d = (q - z[..., None]) * s[..., None]
    return ungroup(d, w.shape[0], k)


SCHEMES = {
    "symmetric [-8, 7], scale m / -8 (4.5 b/w)": lambda w: symmetric(w, 8),
    "symmetric [-7, 7], scale amax / 7 (4.5 b/w)": lambda w: symmetric(w, 7),
    "asymmetric [0, 15], 4-bit zero (4.625 b/w)": lambda w: asymmetric(w, False),
    "asymmetric [0, 15], f16 minimum (5 b/w)": lambda w: asymmetric(w, True),
}


def main():
    for arch, cfg in ARCHS.items():
        model = random_opt(21, vocab_size=VOCAB, max_position_embeddings=SEQ_LEN + 8, dropout=0.0,
                           attention_dropout=0.0, init_std=0.1, pad_token_id=1, bos_token_id=2, eos_token_id=2, **cfg)
        seqs = torch.tensor(sequences(N_SEQ, SEQ_LEN, seed=7))
        with torch.no_grad():
            ref = model(seqs).logits.numpy().reshape(-1, VOCAB)
        for name, quantize in SCHEMES.items():
            m, err = copy.deepcopy(model), []
            with torch.no_grad():
                for n, p in m.named_parameters():
                    if is_matmul(n):
                        w = p.numpy()
                        d = quantize(w).astype(np.float32)
                        err.append(((d - w) ** 2).mean() / (w ** 2).mean())
                        p.copy_(torch.from_numpy(d))
                ours = m(seqs).logits.numpy().reshape(-1, VOCAB)
            kl, top1 = kl_and_top1(ref, ours)
            print(f"{arch:13s} {name:45s} rel. MSE {np.mean(err):.3e}  KL {kl:.3e}  top-1 {top1:.4f}")


if __name__ == "__main__":
    main()
