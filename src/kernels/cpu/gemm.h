// y = x · Wᵀ + bias, the one matrix product of the model (every Linear and the tied head).
// x is f32 [M, K]; W is [N, K] in f32, f16, bf16, int8 with a per-row f32 scale or int4 with f16
// group scales (matrix.h);
// y is f32 [M, N]; accumulation is f32.
// Small M (decode) streams W once through our own kernel, converting in registers; large M
// (prompts) goes to oneDNN's matmul (onednn_gemm.h says how each dtype is computed there).
#pragma once

#include "kernels/cpu/matrix.h"

namespace optforge::cpu {

// Row counts up to this use the streaming kernel for weights of dtype dt, more go to oneDNN: the
// last row count at which the streaming kernel takes at most 5% longer than oneDNN's product (on
// one thread, W 3072 x 768 and 768 x 3072 read from memory), as `bench/gemm_rows.sh` prints it.
// On an AVX-512 BF16 EPYC (figures in docs/inference.md), oneDNN's f32 product wins from 2 rows;
// its f16 one (W converted to f32 first, onednn_gemm.h) is within 10% from 3 rows and wins by
// more than 5% from 18; its bf16 one (two native products) is even at 16-19 and wins from 20.
constexpr int64_t streaming_rows(DType dt) {
  switch (dt) {
    case DType::F32: return 1;
    case DType::BF16: return 19;
    // int8 with the AVX2 kernel (oneDNN dequantizes blocks of rows to f32): 17 and 19 in two runs
    // on the same EPYC; with AVX-512, kInt8Avx512StreamingRows below.
    case DType::I8: return 17;
    // int4 (U8) with the AVX2 kernel (oneDNN dequantizes blocks of rows to f32): within 5% up to
    // 7 rows in one run on the same EPYC (unpacking nibbles costs more per weight than int8's
    // widening); with AVX-512, kInt4Avx512StreamingRows below.
    case DType::U8: return 7;
    default: return 17;
  }
}

// The most rows the streaming kernel is measured at (bench/gemm_rows.sh) and held to the reference
// at (model_kernels_test); it takes any count, but `linear` gives it at most streaming_rows.
constexpr int64_t kSkinnyMaxRows = 64;
static_assert(streaming_rows(DType::F32) <= kSkinnyMaxRows && streaming_rows(DType::BF16) <= kSkinnyMaxRows &&
              streaming_rows(DType::F16) <= kSkinnyMaxRows && streaming_rows(DType::I8) <= kSkinnyMaxRows &&
              streaming_rows(DType::U8) <= kSkinnyMaxRows);

// int8 W on a CPU with AVX-512 (skinny_int8_avx512.h: 4 x 4 tiles, 16 lanes): the streaming
// kernel was ahead of oneDNN at every row count measured (1..64, by 1.3-1.5x at 17-37 rows), so it
// takes every count it is tested at.
constexpr int64_t kInt8Avx512StreamingRows = kSkinnyMaxRows;

// int4 W on a CPU with AVX-512 (skinny_int4_avx512.cpp): ahead of oneDNN at every row count up to
// 27 in one run (by 2.2-2.6x at 1-4 rows), within 5% to 35, 10% slower past that.
constexpr int64_t kInt4Avx512StreamingRows = 27;

// The row limit `linear` applies on this CPU: streaming_rows(dt), or kInt8Avx512StreamingRows /
// kInt4Avx512StreamingRows for int8 / int4 where has_avx512() (cpu_features.h).
int64_t streaming_rows_here(DType dt);

void linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y);

// The streaming kernel on its own: y[m * ldy + n] = x_m · W_n (+ bias[n]) for rows n in [n0, n1)
// of W and all M rows of x (f32, row m at x + m * ldx, K = w.cols values each); bias may be null.
// Any M works; the kernel is built for few (it re-reads x for every 4 rows of W). An int8 W is
// accumulated as f32 x · q over the row and multiplied by the row's scale once at the end
// (dequantize in registers: q widened to int32, converted to f32, FMA). simd false, or
// a CPU without AVX2/FMA/F16C, takes the scalar loop. Single-threaded; `linear` splits the rows
// over threads.
// avx512 false keeps an int8 W on the AVX2 kernel where the CPU has AVX-512 (tests compare them).
void skinny_gemm(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1, bool simd, bool avx512 = true);

}  // namespace optforge::cpu
