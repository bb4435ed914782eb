// Vector primitives for the attention and normalisation kernels (AVX2 where available); the
// overloads taking a DType read one operand stored as f32, f16 or bf16 (the KV cache) and convert
// it in registers; arithmetic is f32.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

float dot(const float* a, const float* b, int64_t n);
// y += a * x
void axpy(float a, const float* x, float* y, int64_t n);

float dot(const float* a, const void* b, DType bt, int64_t n);
void axpy(float a, const void* x, DType xt, float* y, int64_t n);

}  // namespace optforge::cpu
