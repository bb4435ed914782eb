// cpu::linear's oneDNN path (prompts, and decode batches above the streaming kernel's rows) on
// shapes that split into several tiles, against the product computed in double on the same stored
// weights. (model_kernels_test's LargeLinear crosses f16's conversion blocks.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/onednn_gemm.h"
#include "stored_values.h"

using namespace optforge;
using optforge::test_util::random_floats;
using optforge::test_util::reference_linear;
using optforge::test_util::store;
using optforge::test_util::Stored;

namespace {

void check(DType dt, int64_t M, int64_t N, int64_t K, bool with_bias) {
  const auto x = random_floats(size_t(M * K), 1), bias = random_floats(size_t(N), 3);
  const Stored w = store(random_floats(size_t(N * K), 2), dt);  // the reference multiplies W as stored
  const std::vector<float> no_bias, &b = with_bias ? bias : no_bias;
  std::vector<float> y(size_t(M * N), -7.0f);
  cpu::linear(x.data(), M, {dt, w.bytes.data(), N, K}, with_bias ? bias.data() : nullptr, y.data());
  // Rows and columns at tile and block edges, and a spread in between.
  for (int64_t m : {int64_t(0), int64_t(31), int64_t(32), M / 2, M - 1})
    for (int64_t n : {int64_t(0), int64_t(63), int64_t(64), int64_t(255), int64_t(256), N / 2, N - 1}) {
      if (m >= M || n >= N) continue;
      const double s = reference_linear(x, w.values, b, K, m, n);
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
    // A decode batch past the streaming kernel (gemm.h's streaming_rows), long K.
    check(dt, std::max<int64_t>(17, cpu::streaming_rows(dt) + 1), 33, 1000, false);
  }
}

TEST(OneDnnLinear, ReportsTheIsaAndTheKernelsChosen) {
  check(DType::F32, 40, 64, 64, false);
  EXPECT_FALSE(cpu::onednn_isa().empty());
  EXPECT_NE(cpu::onednn_kernels().find("f32: "), std::string::npos) << cpu::onednn_kernels();
}
