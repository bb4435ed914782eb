// Int8 weight-only quantization: the scheme (model/quantize.h) on hand-made rows, and every int8
// matrix-product path (AVX2 streaming kernel, its scalar loop, oneDNN through `linear`) against a
// double-precision product with the dequantized weights q * scale, on odd shapes. On a CPU with
// AVX-512 the int8 kernel has a third path; both SIMD paths are run wherever the CPU has them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/onednn_gemm.h"
#include "model/quantize.h"
#include "stored_values.h"
#include "util/error.h"

using namespace optforge;
using optforge::test_util::random_floats;

namespace {

struct Int8Matrix {
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<float> deq;  // q * scale in f32: the weights the product stands for
};

Int8Matrix quantized(int64_t N, int64_t K, uint32_t seed) {
  const auto w = random_floats(size_t(N * K), seed, 0.5f);
  Int8Matrix m{std::vector<int8_t>(size_t(N * K)), std::vector<float>(size_t(N)), std::vector<float>(size_t(N * K))};
  for (int64_t n = 0; n < N; ++n) {
    m.scale[size_t(n)] = quantize_row_int8(w.data() + n * K, K, m.q.data() + n * K);
    for (int64_t k = 0; k < K; ++k) m.deq[size_t(n * K + k)] = float(m.q[size_t(n * K + k)]) * m.scale[size_t(n)];
  }
  return m;
}

double reference(const std::vector<float>& x, const Int8Matrix& w, const std::vector<float>& bias, int64_t K, int64_t m,
                 int64_t n) {
  double s = bias.empty() ? 0.0 : bias[size_t(n)];
  for (int64_t k = 0; k < K; ++k) s += double(x[size_t(m * K + k)]) * w.deq[size_t(n * K + k)];
  return s;
}

}  // namespace

TEST(QuantizeRow, ScaleIsAmaxOver127AndTiesRoundToEven) {
  // amax 127 -> scale exactly 1, so W / scale = W and the ties are visible.
  const std::vector<float> w{127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.49f, -127.0f};
  std::vector<int8_t> q(w.size());
  EXPECT_EQ(quantize_row_int8(w.data(), int64_t(w.size()), q.data()), 1.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{127, 2, 4, -2, 0, 0, 1, -127}));
}

TEST(QuantizeRow, DividesByTheScaleInF32) {
  const std::vector<float> w{0.3f, -0.1f, 0.07f};
  std::vector<int8_t> q(3);
  const float scale = quantize_row_int8(w.data(), 3, q.data());
  EXPECT_EQ(scale, 0.3f / 127.0f);
  for (size_t k = 0; k < 3; ++k) EXPECT_EQ(q[k], int8_t(std::nearbyint(w[k] / scale))) << k;
}

TEST(QuantizeRow, ZeroRowGivesZeroScaleAndZeros) {
  const std::vector<float> w{0.0f, -0.0f, 0.0f};
  std::vector<int8_t> q(3, 5);
  EXPECT_EQ(quantize_row_int8(w.data(), 3, q.data()), 0.0f);
  EXPECT_EQ(q, (std::vector<int8_t>{0, 0, 0}));
  const float tiny = std::numeric_limits<float>::denorm_min();  // amax / 127 underflows to 0
  const std::vector<float> t{tiny, -tiny};
  std::vector<int8_t> qt(2, 5);
  EXPECT_EQ(quantize_row_int8(t.data(), 2, qt.data()), 0.0f);
  EXPECT_EQ(qt, (std::vector<int8_t>{0, 0}));
}

TEST(QuantizeMatrix, NonFiniteWeightIsAnErrorNamingTheTensor) {
  Tensor t = Tensor::empty(DType::F32, {3, 4});
  reinterpret_cast<float*>(t.storage->mutable_data())[6] = std::numeric_limits<float>::quiet_NaN();
  try {
    quantize_int8(t, "model.safetensors", "fc1.weight");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fc1.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("row 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  }
}

class Int8Linear : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

// Rows 1..70 (the streaming kernel; oneDNN past the streaming rows, and called directly at every
// count), K not a multiple of 8 or 16.
TEST_P(Int8Linear, EveryPathMatchesTheDequantizedProduct) {
  const auto [M, K] = GetParam();
  const int64_t N = 37;  // tails of the 4-row tiles
  const auto x = random_floats(size_t(M * K), uint32_t(M * 1000 + K));
  const auto bias = random_floats(size_t(N), 2);
  const Int8Matrix w = quantized(N, K, uint32_t(K));
  cpu::MatrixRef ref{DType::I8, w.q.data(), N, K};
  ref.scale = w.scale.data();
  const double tol = 1e-5 + 2e-6 * double(K);  // f32 accumulation of K terms of size ~0.5
  std::vector<float> y(size_t(M * N), -1.0f), dnn(size_t(M * N), -1.0f);
  cpu::linear(x.data(), M, ref, bias.data(), y.data());
  cpu::onednn_linear(x.data(), M, ref, bias.data(), dnn.data());  // the prefill path at any M
  std::vector<float> scalar(size_t(M * N), -1.0f), simd(size_t(M * N), -1.0f), wide(size_t(M * N), -1.0f);
  cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), scalar.data(), N, 0, N, false);
  cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), simd.data(), N, 0, N, true, false);  // AVX2
  cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), wide.data(), N, 0, N, true, true);   // AVX-512 if any
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const size_t i = size_t(m * N + n);
      const double want = reference(x, w, bias, K, m, n);
      EXPECT_NEAR(y[i], want, tol) << "linear m=" << m << " n=" << n;
      EXPECT_NEAR(dnn[i], want, tol) << "oneDNN m=" << m << " n=" << n;
      EXPECT_NEAR(scalar[i], want, tol) << "scalar m=" << m << " n=" << n;
      EXPECT_NEAR(simd[i], scalar[i], tol) << "avx2 vs scalar m=" << m << " n=" << n;
      EXPECT_NEAR(wide[i], scalar[i], tol) << "avx512 vs scalar m=" << m << " n=" << n;
    }
}

INSTANTIATE_TEST_SUITE_P(OddShapes, Int8Linear,
                         ::testing::Combine(::testing::Values(int64_t(1), int64_t(2), int64_t(3), int64_t(4),
                                                              int64_t(5), int64_t(17), int64_t(18), int64_t(40),
                                                              int64_t(64), int64_t(70)),
                                            ::testing::Values(int64_t(7), int64_t(83), int64_t(257))));

TEST(Int8Linear, ReportsTheKernels) {  // which paths the test above covered on this machine
  std::printf("AVX2: %s, AVX-512: %s\n", cpu::has_avx2_fma_f16c() ? "yes" : "no", cpu::has_avx512() ? "yes" : "no");
}

TEST(Int8Linear, LoadRowDequantizes) {
  const Int8Matrix w = quantized(5, 29, 9);
  cpu::MatrixRef ref{DType::I8, w.q.data(), 5, 29};
  ref.scale = w.scale.data();
  std::vector<float> row(29);
  for (int64_t r = 0; r < 5; ++r) {
    cpu::load_row(ref, r, row.data());
    for (int64_t k = 0; k < 29; ++k) EXPECT_EQ(row[size_t(k)], w.deq[size_t(r * 29 + k)]) << r << "," << k;
  }
}
