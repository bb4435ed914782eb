// Vector primitives for the attention kernels (AVX2 where available): one operand is stored as
// f32, f16 or bf16 (the KV cache) and converted in registers; arithmetic is f32.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

// sum over i < n of a[i] * b[i], b stored as bt.
float dot(const float* a, const void* b, DType bt, int64_t n);
// y[i] += a * x[i] for i < n, x stored as xt.
void axpy(float a, const void* x, DType xt, float* y, int64_t n);

}  // namespace optforge::cpu
