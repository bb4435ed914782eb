// A weight matrix as the kernels see it: row-major [rows = outputs, cols = inputs] (torch's
// Linear layout) in its stored dtype, usually a view into an mmapped checkpoint. An int8 matrix
// (weight-only quantization, docs/inference.md) stands for W[r, c] = q[r, c] * scale[r] in f32; a
// U8 matrix is int4 packed two to a byte (tensor/quantize_int4.h) with an f16 scale per group of
// 32 columns: W[r, c] = (nibble(r, c) - 8) * f32(group_scale[r * ceil(cols / 32) + c / 32]).
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

struct MatrixRef {
  DType dtype = DType::F32;  // F32, F16, BF16, I8 or U8 (int4 packed; cols counts the values)
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  const float* scale = nullptr;           // I8 only: one f32 scale per row (rows values)
  const uint16_t* group_scale = nullptr;  // U8 only: f16 bits, [rows, ceil(cols / 32)]

  const uint8_t* row(int64_t r) const {
    if (dtype == DType::U8) return static_cast<const uint8_t*>(data) + r * ((cols + 1) / 2);
    return static_cast<const uint8_t*>(data) + r * cols * int64_t(dtype_size(dtype));
  }
};

// Row r of m converted to f32 into dst[cols] (I8: q * scale[r], one f32 rounding per element).
void load_row(const MatrixRef& m, int64_t r, float* dst);

}  // namespace optforge::cpu
