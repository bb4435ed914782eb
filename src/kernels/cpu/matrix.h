// A weight matrix as the kernels see it: row-major [rows = outputs, cols = inputs] (torch's
// Linear layout) in its stored dtype, usually a view into an mmapped checkpoint.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

struct MatrixRef {
  DType dtype = DType::F32;  // F32, F16 or BF16
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;

  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + r * cols * int64_t(dtype_size(dtype));
  }
};

// Row r of m converted to f32 into dst[cols].
void load_row(const MatrixRef& m, int64_t r, float* dst);

}  // namespace optforge::cpu
