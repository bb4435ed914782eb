#include "kernels/cpu/activation.h"

#include <cmath>

#include "kernels/cpu/threads.h"

namespace optforge::cpu {

void activation(float* x, int64_t n, Activation a) {
  parallel_for(n, 1 << 14, [&](int64_t i0, int64_t i1) {
    switch (a) {
      case Activation::Relu:
        for (int64_t i = i0; i < i1; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
      case Activation::Gelu:
        for (int64_t i = i0; i < i1; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * float(M_SQRT1_2)));
        break;
      case Activation::GeluTanh: {
        const float k = float(std::sqrt(2.0 / M_PI));
        for (int64_t i = i0; i < i1; ++i) {
          const float v = x[i];
          x[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
        }
        break;
      }
    }
  });
}

}  // namespace optforge::cpu
