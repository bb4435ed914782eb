#include "kernels/cpu/norm.h"

#include <cmath>

#include "kernels/cpu/threads.h"

namespace optforge::cpu {

void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta, float eps,
                float* y) {
  parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      // Two passes in double: the statistics are then exact to f32 precision whatever the width,
      // which keeps us within rounding of torch's own (f32, blocked) reduction.
      double mean = 0, var = 0;
      for (int64_t c = 0; c < cols; ++c) mean += xr[c];
      mean /= double(cols);
      for (int64_t c = 0; c < cols; ++c) var += (xr[c] - mean) * (xr[c] - mean);
      var /= double(cols);
      const float m = float(mean), rstd = float(1.0 / std::sqrt(var + double(eps)));
      if (gamma && beta)
        for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * rstd * gamma[c] + beta[c];
      else  // no elementwise affine
        for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * rstd;
    }
  });
}

}  // namespace optforge::cpu
