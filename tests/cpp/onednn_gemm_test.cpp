// cpu::linear's oneDNN path (prompts, and decode batches above the streaming kernel's rows) on
// shapes that split into several tiles and, for f16, several conversion blocks, against the
// product computed in double on the same stored weights.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/onednn_gemm.h"
#include "tensor/convert.h"

using namespace optforge;

namespace {

std::vector<float> uniform(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void check(DType dt, int64_t M, int64_t N, int64_t K, bool with_bias) {
  const auto x = uniform(size_t(M * K), 1), wf = uniform(size_t(N * K), 2), bias = uniform(size_t(N), 3);
  std::vector<uint8_t> w(wf.size() * dtype_size(dt));
  std::vector<float> stored(wf.size());  // W as stored, in f32: what the reference multiplies
  convert_elements(DType::F32, reinterpret_cast<const uint8_t*>(wf.data()), dt, w.data(), wf.size());
  convert_elements(dt, w.data(), DType::F32, reinterpret_cast<uint8_t*>(stored.data()), wf.size());
  std::vector<float> y(size_t(M * N), -7.0f);
  cpu::linear(x.data(), M, {dt, w.data(), N, K}, with_bias ? bias.data() : nullptr, y.data());
  // Rows and columns at tile and block edges, and a spread in between.
  for (int64_t m : {int64_t(0), int64_t(31), int64_t(32), M / 2, M - 1})
    for (int64_t n : {int64_t(0), int64_t(63), int64_t(64), int64_t(255), int64_t(256), N / 2, N - 1}) {
      if (m >= M || n >= N) continue;
      double s = with_bias ? bias[size_t(n)] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(x[size_t(m * K + k)]) * stored[size_t(n * K + k)];
      // f32 accumulation over K terms of size <= 1: a few ulps of sqrt(K); bf16 weights also
      // see x to 2^-17 (onednn_gemm.h).
      EXPECT_NEAR(y[size_t(m * N + n)], s, 2e-5 * std::sqrt(double(K)) + 1e-5)
          << dtype_name(dt) << " " << m << "," << n;
    }
}

}  // namespace

TEST(OneDnnLinear, ManyTilesEveryDtype) {
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    check(dt, 300, 700, 200, true);  // 3 x 3 tiles, partial ones on both edges
    check(dt, 17, 33, 1000, false);  // a decode batch past the streaming kernel, long K
  }
}

TEST(OneDnnLinear, F16ConvertsInSeveralBlocks) {
  check(DType::F16, 20, 70000, 64, true);  // 65536 rows per conversion block at K = 64
}

TEST(OneDnnLinear, ReportsTheIsaAndTheKernelsChosen) {
  check(DType::F32, 40, 64, 64, false);
  EXPECT_FALSE(cpu::onednn_isa().empty());
  EXPECT_NE(cpu::onednn_kernels().find("f32: "), std::string::npos) << cpu::onednn_kernels();
}
