"""numpy's implementation of optforge's int8 and int4 weight-only schemes (docs/inference.md, "Int8
weight quantization", "Int4 weight quantization"), and transformers models carrying the dequantized weights it stands for."""
import copy

import numpy as np
import torch

# The matmul weights (roles of kind Matrix) in transformers' OPT names; the tied embedding only on
# request (--quantize-embeddings).
MATMUL_SUFFIXES = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight", "fc1.weight", "fc2.weight",
                   "project_in.weight", "project_out.weight")
EMBEDDING = "model.decoder.embed_tokens.weight"


def quantize_int8(w):
    """w [N, K] (any float dtype, converted to f32 exactly) -> (q int8 [N, K], scale f32 [N])."""
    w = np.asarray(w, dtype=np.float32)
    scale = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    q = np.rint(w / safe[:, None])  # f32 division; rint rounds half to even
    q = np.where(scale[:, None] == 0, 0, np.clip(q, -127, 127))
    return q.astype(np.int8), scale


def dequantize(q, scale):
    return q.astype(np.float32) * scale[:, None]


def is_matmul(name):
    return name.endswith(MATMUL_SUFFIXES)


def dequantized_model(model, embeddings=False, scheme="int8"):
    """A copy of an f32 OPTForCausalLM whose matmul weights (and with `embeddings` the tied
    embedding / lm_head) are replaced by the dequantized weights of the scheme ("int8", "int4")."""
    quant, dequant = (quantize_int4, dequantize_int4) if scheme == "int4" else (quantize_int8, dequantize)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if is_matmul(name) or (embeddings and name == EMBEDDING):
                p.copy_(torch.from_numpy(dequant(*quant(p.numpy()))))
    return m


# --- int4: symmetric groups of 32 along K, f16 scales (docs/inference.md, "Int4 weight quantization") ---

GROUP = 32


def quantize_int4(w):
    """w [N, K] (K even) -> (packed uint8 [N, K / 2], scale float16 [N, ceil(K / 32)])."""
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    g = np.pad(w, ((0, 0), (0, (-k) % GROUP))).reshape(n, -1, GROUP)  # zero padding never wins the max
    m = np.take_along_axis(g, np.abs(g).argmax(-1)[..., None], -1)[..., 0]  # argmax: the first of ties
    scale = (m / np.float32(-8)).astype(np.float16)  # f32 division, then round to nearest even f16
    s = scale.astype(np.float32)[..., None]
    q = np.rint(g / np.where(s == 0, np.float32(1), s))  # f32 division; rint rounds half to even
    q = np.where(s == 0, 0, np.clip(q, -8, 7)).reshape(n, -1)[:, :k]
    nib = (q + 8).astype(np.uint8)
    return nib[:, 0::2] | (nib[:, 1::2] << 4), scale


def dequantize_int4(packed, scale):
    nib = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
    s = np.repeat(scale.astype(np.float32), GROUP, axis=1)[:, :nib.shape[1]]
    return (nib.astype(np.float32) - 8) * s
