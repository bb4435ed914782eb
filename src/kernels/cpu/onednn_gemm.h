// Prompt-time matrix products through oneDNN's matmul. oneDNN picks its kernel (AVX2, AVX-512,
// AVX-512 BF16, AMX) from the CPU's feature bits at run time, so the speed does not depend on
// whether a BLAS library knows this CPU model by name. Each product is cut into output tiles that
// run on our thread pool (threads.h), each a single-threaded oneDNN call.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cpu/matrix.h"

namespace optforge::cpu {

// y[M, N] = x[M, K] · Wᵀ (+ bias[N]); x, y, bias f32, W [N, K] row-major (w.rows = N).
// Numerics, per W dtype:
//  - F32: an f32 matmul (f32 accumulation, as before; only the summation order changes).
//  - BF16 on a CPU with AVX-512 BF16 or AMX: W is used as stored; x (f32) is split into
//    hi = bf16(x) and lo = bf16(x - hi), and y = hi·Wᵀ + lo·Wᵀ, two native bf16 products with f32
//    accumulation. x is then represented to about 2^-17 relative (f32: 2^-24), at no more
//    arithmetic than one f32 product and without converting W.
//  - F16, or BF16 elsewhere: oneDNN 2.6 has no native f16 (or fast bf16) kernel there, so W is
//    converted to f32 a block of rows at a time and multiplied in f32 (exact, as before).
//  - I8 (with per-row scales, matrix.h): the same, each row dequantized to q * scale in f32 (one
//    rounding) a block at a time; oneDNN's s8 weights would need s8 activations or its
//    weight-decompression attributes, which oneDNN 2.6 lacks.
//  - U8 (int4, group scales, matrix.h): likewise, each row dequantized to (q - 8) * scale in f32.
// Throws optforge::Error if oneDNN cannot build a kernel for the shape.
void onednn_linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y);

// The kernels oneDNN chose so far, e.g. "f32: brg:avx512_core; bf16: brg:avx512_core_bf16",
// and the instruction set it dispatches for on this CPU, e.g. "avx512_core_bf16".
std::string onednn_kernels();
std::string onednn_isa();

}  // namespace optforge::cpu
