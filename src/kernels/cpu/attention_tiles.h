// The output update of blocked attention, register-tiled (AVX2 where available): O += P · V for
// one block of queries and keys, reading V as the KV cache stores it. (The block's other product,
// the scores Q·Kᵀ, is the streaming matrix kernel of gemm.h with the key block as W.)
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

// acc[r * hd + j] += sum over t < n of p[r * ldp + t] * v_t[j], for r < rows, j < hd, where v_t is
// row t of v: hd values stored as v_dtype (F32, F16 or BF16), rows at stride hd, converted to f32
// in registers. p and acc are f32.
void block_pv(const float* p, int64_t ldp, int64_t rows, const void* v, DType v_dtype, int64_t n, int64_t hd,
              float* acc);

}  // namespace optforge::cpu
