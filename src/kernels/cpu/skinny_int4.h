// The int4 matrix (matrix.h's U8: packed nibbles, an f16 scale per group of 32 columns) in the
// streaming kernel and as rows of f32 (the embedding lookup, oneDNN's dequantized blocks).
#pragma once

#include <cstdint>

#include "kernels/cpu/matrix.h"
#include "tensor/dtype.h"

namespace optforge::cpu {

// Column k of a packed int4 row with its group scales sc, dequantized: the scalar loop's weight
// and the SIMD kernels' short last group.
inline float int4_weight(const uint8_t* row, const uint16_t* sc, int64_t k) {
  const int nib = k % 2 ? row[k / 2] >> 4 : row[k / 2] & 0x0f;
  return float(nib - 8) * f16_to_f32(sc[k / 32]);
}

// As skinny_gemm (gemm.h) for w.dtype == U8: y[m * ldy + n] = x_m · W_n (+ bias[n]) for n in
// [n0, n1), W_n dequantized in f32 (each weight (q - 8) * scale, one rounding, then an FMA), f32
// accumulation. simd: the AVX2 kernel (callers check has_avx2_fma_f16c()); else the scalar loop,
// the reference the tests hold it to. Any K: whole groups of 32 go through the vector unpack, a
// short last group through the scalar one.
void skinny_int4(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1, bool simd);

// The same with AVX-512 (skinny_int4_avx512.cpp): 16 lanes, tiles of 4 weight rows x 4 activation
// rows (8 x 1 for one row). Callers check has_avx512() first.
void skinny_int4_avx512(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y,
                        int64_t ldy, int64_t n0, int64_t n1);

// Row r of an int4 matrix in f32 into dst[cols]: exactly dequantize_row_int4
// (tensor/quantize_int4.h), vectorized with AVX2 where the CPU has it.
void load_row_int4(const MatrixRef& m, int64_t r, float* dst);

}  // namespace optforge::cpu
