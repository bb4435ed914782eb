// LayerNorm over the last dimension, as torch.nn.LayerNorm: biased variance, eps inside the sqrt.
#pragma once

#include <cstdint>

namespace optforge::cpu {

// y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta for each of `rows` rows (y may be x);
// gamma and beta null: no elementwise affine (torch.nn.LayerNorm(elementwise_affine=False)).
void layer_norm(const float* x, int64_t rows, int64_t cols, const float* gamma, const float* beta, float eps, float* y);

}  // namespace optforge::cpu
