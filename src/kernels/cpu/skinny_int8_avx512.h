// The int8 streaming kernel with AVX-512 (skinny_gemm's int8 case on CPUs with AVX-512 F/BW/VL):
// 16 weights per instruction and, with 32 vector registers, tiles of 4 weight rows x 4 activation
// rows, so each row's int8 -> f32 conversion serves four activation rows instead of two (8 x 1
// for a single activation row).
#pragma once

#include <cstdint>

#include "kernels/cpu/matrix.h"

namespace optforge::cpu {

// As skinny_gemm (gemm.h) for w.dtype == I8: y[m * ldy + n] = scale[n] * (x_m · q_n) (+ bias[n])
// for n in [n0, n1). Callers check has_avx512() first.
void skinny_int8_avx512(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y,
                        int64_t ldy, int64_t n0, int64_t n1);

}  // namespace optforge::cpu
