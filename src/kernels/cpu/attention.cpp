#include "kernels/cpu/attention.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/vec.h"

namespace optforge::cpu {

void attend_head(const float* q, int64_t ldq, int64_t s, const void* keys, const void* values, DType kv_dtype,
                 const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo, float* scratch) {
  const int64_t row_bytes = hd * int64_t(dtype_size(kv_dtype));
  const auto* kb = static_cast<const uint8_t*>(keys);
  const auto* vb = static_cast<const uint8_t*>(values);
  for (int64_t i = 0; i < s; ++i) {
    const float* qi = q + i * ldq;
    float* oi = out + i * ldo;
    const int64_t visible = t0 + i + 1;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t t = 0; t < visible; ++t) {
      if (!key_mask[t]) continue;
      scratch[t] = dot(qi, kb + t * row_bytes, kv_dtype, hd);
      if (scratch[t] > mx) mx = scratch[t];
    }
    std::memset(oi, 0, size_t(hd) * sizeof(float));
    if (mx == -std::numeric_limits<float>::infinity()) continue;  // nothing visible
    float sum = 0;
    for (int64_t t = 0; t < visible; ++t) {
      if (!key_mask[t]) continue;
      scratch[t] = std::exp(scratch[t] - mx);
      sum += scratch[t];
    }
    const float inv = 1.0f / sum;
    for (int64_t t = 0; t < visible; ++t)
      if (key_mask[t]) axpy(scratch[t] * inv, vb + t * row_bytes, kv_dtype, oi, hd);
  }
}

}  // namespace optforge::cpu
