// Test helpers: random values; values stored as a checkpoint or cache holds them (f32, f16 or bf16 bytes, rounded
// as torch rounds) beside the f32 values those bytes stand for, which the references compute on;
// and the reference matrix product on those values, in double.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "tensor/convert.h"
#include "tensor/dtype.h"

namespace optforge::test_util {

// n values drawn from N(0, 1), the same for the same seed.
inline std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// n values uniform in [-scale, scale), the same for the same seed.
inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

struct Stored {
  std::vector<uint8_t> bytes;  // x.size() elements of the dtype
  std::vector<float> values;   // what the bytes stand for, in f32
};

inline Stored store(const std::vector<float>& x, DType dt) {
  Stored s{std::vector<uint8_t>(x.size() * dtype_size(dt)), std::vector<float>(x.size())};
  convert_elements(DType::F32, reinterpret_cast<const uint8_t*>(x.data()), dt, s.bytes.data(), x.size());
  convert_elements(dt, s.bytes.data(), DType::F32, reinterpret_cast<uint8_t*>(s.values.data()), x.size());
  return s;
}

// Element (m, n) of y = x · Wᵀ + bias in double: x [M, K] and w [N, K] row-major f32 (w: a
// Stored's values), bias empty (none) or [N].
inline double reference_linear(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& bias,
                               int64_t K, int64_t m, int64_t n) {
  double s = bias.empty() ? 0.0 : bias[size_t(n)];
  for (int64_t k = 0; k < K; ++k) s += double(x[size_t(m * K + k)]) * w[size_t(n * K + k)];
  return s;
}

}  // namespace optforge::test_util
