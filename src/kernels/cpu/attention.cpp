#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/vec.h"

namespace optforge::cpu {

// The loops walk the slots a block at a time (a run of contiguous rows), so the paged layout
// costs one table lookup per block, not per row.
void attend_head(const float* q, int64_t ldq, int64_t s, const KvRows& keys, const KvRows& values, DType kv_dtype,
                 const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo, float* scratch) {
  const int64_t row_bytes = keys.row_bytes;
  for (int64_t i = 0; i < s; ++i) {
    const float* qi = q + i * ldq;
    float* oi = out + i * ldo;
    const int64_t visible = t0 + i + 1;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t b = 0; b < visible;) {
      const int64_t n = std::min(keys.run(b), visible - b);
      const uint8_t* kb = keys.row(b);
      for (int64_t t = 0; t < n; ++t) {
        if (!key_mask[b + t]) continue;
        const float sc = scratch[b + t] = dot(qi, kb + t * row_bytes, kv_dtype, hd);
        if (sc > mx) mx = sc;
      }
      b += n;
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
    for (int64_t b = 0; b < visible;) {
      const int64_t n = std::min(values.run(b), visible - b);
      const uint8_t* vb = values.row(b);
      for (int64_t t = 0; t < n; ++t)
        if (key_mask[b + t]) axpy(scratch[b + t] * inv, vb + t * row_bytes, kv_dtype, oi, hd);
      b += n;
    }
  }
}

}  // namespace optforge::cpu
