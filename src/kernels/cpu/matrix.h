// A weight matrix as the kernels see it: row-major [rows = outputs, cols = inputs] (torch's
// Linear layout) in its stored dtype, usually a view into an mmapped checkpoint. An int8 matrix
// (weight-only quantization, docs/inference.md) stands for W[r, c] = q[r, c] * scale[r] in f32.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

struct MatrixRef {
  DType dtype = DType::F32;  // F32, F16, BF16 or I8
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  const float* scale = nullptr;  // I8 only: one f32 scale per row (rows values)

  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + r * cols * int64_t(dtype_size(dtype));
  }
};

// Row r of m converted to f32 into dst[cols] (I8: q * scale[r], one f32 rounding per element).
void load_row(const MatrixRef& m, int64_t r, float* dst);

}  // namespace optforge::cpu
