"""numpy's implementation of optforge's int8 weight-only scheme (docs/inference.md, "Int8 weight
quantization"), and transformers models carrying the dequantized weights it stands for."""
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


def dequantized_model(model, embeddings=False):
    """A copy of an f32 OPTForCausalLM whose matmul weights (and with `embeddings` the tied
    embedding / lm_head) are replaced by q * scale of the scheme."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if is_matmul(name) or (embeddings and name == EMBEDDING):
                p.copy_(torch.from_numpy(dequantize(*quantize_int8(p.numpy()))))
    return m
