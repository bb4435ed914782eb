// y = x · Wᵀ + bias, the one matrix product of the model (every Linear and the tied head).
// x is f32 [M, K]; W is [N, K] in f32, f16 or bf16; y is f32 [M, N]; accumulation is f32.
// Small M (decode) streams W once through our own kernel, converting in registers; large M
// (prompts) goes to oneDNN's matmul (onednn_gemm.h says how each dtype is computed there).
#pragma once

#include "kernels/cpu/matrix.h"

namespace optforge::cpu {

// The most rows the streaming kernel takes.
constexpr int64_t kSkinnyMaxRows = 64;

// Row counts up to this use the streaming kernel for weights of dtype dt, more go to oneDNN.
// Measured on an AVX-512 BF16 EPYC, one thread, W 3072 x 768 (docs/inference.md): oneDNN's f32
// product wins from 2 rows; its bf16 one (two products, onednn_gemm.h) from about 12; for f16,
// which oneDNN converts first, the two are even at about 24 rows.
int64_t streaming_rows(DType dt);

void linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y);

// The streaming kernel on its own: y[m * ldy + n] = x_m · W_n (+ bias[n]) for rows n in [n0, n1)
// of W and all M rows of x (f32, row m at x + m * ldx, K = w.cols values each); bias may be null.
// Any M works; the kernel is built for few (it re-reads x for every 4 rows of W). simd false, or
// a CPU without AVX2/FMA/F16C, takes the scalar loop. Single-threaded; `linear` splits the rows
// over threads.
void skinny_gemm(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1, bool simd);

}  // namespace optforge::cpu
