// f32 vector primitives for the attention and normalisation kernels (AVX2 where available).
#pragma once

#include <cstdint>

namespace optforge::cpu {

float dot(const float* a, const float* b, int64_t n);
// y += a * x
void axpy(float a, const float* x, float* y, int64_t n);

}  // namespace optforge::cpu
