// The CPU kernels against straightforward double-precision references, on sizes that are not
// multiples of the SIMD widths or tile sizes, with both the AVX2 and the scalar paths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/threads.h"
#include "stored_values.h"
#include "tensor/dtype.h"

using namespace optforge;
using optforge::test_util::random_floats;
using optforge::test_util::reference_linear;
using optforge::test_util::store;
using optforge::test_util::Stored;

namespace {}  // namespace

class LinearTest : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(LinearTest, MatchesReferenceOnOddSizes) {
  const auto [dtype, M] = GetParam();
  const int64_t N = 37, K = 83;  // tails everywhere: 4-row tiles, 8-wide vectors
  const auto x = random_floats(size_t(M * K), 1);
  const auto bias = random_floats(size_t(N), 2);
  const Stored w = store(random_floats(size_t(N * K), 3), dtype);
  const cpu::MatrixRef ref{dtype, w.bytes.data(), N, K};
  std::vector<double> want(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) want[size_t(m * N + n)] = reference_linear(x, w.values, bias, K, m, n);
  std::vector<float> y(size_t(M * N), -1.0f);
  cpu::linear(x.data(), M, ref, bias.data(), y.data());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], want[i], 1e-4) << i;
  if (M <= cpu::kSkinnyMaxRows) {  // the scalar fallback gives the same products
    for (bool simd : {false, true}) {
      std::vector<float> z(size_t(M * N), -1.0f);
      cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), z.data(), N, 0, N, simd);
      for (size_t i = 0; i < z.size(); ++i) EXPECT_NEAR(z[i], want[i], 1e-4) << i << " simd=" << simd;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypesAndBatches, LinearTest,
                         ::testing::Combine(::testing::Values(DType::F32, DType::F16, DType::BF16),
                                            ::testing::Values(int64_t(1), int64_t(2), int64_t(3), int64_t(8),
                                                              int64_t(9), int64_t(40))));

class LargeLinear : public ::testing::TestWithParam<DType> {};

// More rows than the streaming kernel takes, so oneDNN's path: with K = 64 it converts f16 W (and
// bf16 on CPUs without AVX-512 BF16) to f32 in blocks of 65536 rows (onednn_gemm.h), and N crosses
// a block edge.
TEST_P(LargeLinear, NoBiasAndLargeMatrixThroughTheConversionBlocks) {
  const DType dt = GetParam();
  const int64_t M = cpu::streaming_rows(dt) + 4, N = 70000, K = 64;
  const auto x = random_floats(size_t(M * K), 4);
  const Stored w = store(random_floats(size_t(N * K), 5), dt);
  std::vector<float> y(size_t(M * N));
  cpu::linear(x.data(), M, {dt, w.bytes.data(), N, K}, nullptr, y.data());
  for (int64_t n : {int64_t(0), int64_t(65535), int64_t(65536), N - 1})
    for (int64_t m = 0; m < M; ++m) EXPECT_NEAR(y[size_t(m * N + n)], reference_linear(x, w.values, {}, K, m, n), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Linear, LargeLinear, ::testing::Values(DType::BF16, DType::F16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(LayerNorm, MatchesReference) {
  const int64_t rows = 5, cols = 77;
  auto x = random_floats(size_t(rows * cols), 6, 3.0f);
  for (auto& v : x) v += 10.0f;  // a large mean: the variance must not cancel badly
  const auto g = random_floats(size_t(cols), 7), b = random_floats(size_t(cols), 8);
  std::vector<float> y(x.size());
  cpu::layer_norm(x.data(), rows, cols, g.data(), b.data(), 1e-5f, y.data());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < cols; ++c) mean += x[size_t(r * cols + c)];
    mean /= double(cols);
    for (int64_t c = 0; c < cols; ++c) var += std::pow(x[size_t(r * cols + c)] - mean, 2);
    var /= double(cols);
    for (int64_t c = 0; c < cols; ++c) {
      double want = (x[size_t(r * cols + c)] - mean) / std::sqrt(var + 1e-5) * g[size_t(c)] + b[size_t(c)];
      EXPECT_NEAR(y[size_t(r * cols + c)], want, 1e-5);
    }
  }
}

TEST(Attention, CausalMaskedSoftmaxMatchesReference) {
  const int64_t hd = 13, t0 = 5, s = 4, T = t0 + s;
  const auto q = random_floats(size_t(s * hd), 9), k = random_floats(size_t(T * hd), 10),
             v = random_floats(size_t(T * hd), 11);
  const std::vector<uint8_t> mask = {0, 0, 1, 1, 0, 1, 1, 1, 1};  // slots 0, 1 and 4 are padding
  std::vector<float> out(static_cast<size_t>(s * hd)), scratch(static_cast<size_t>(T));
  cpu::attend_head(q.data(), hd, s, cpu::contiguous_rows(k.data(), DType::F32, hd),
                   cpu::contiguous_rows(v.data(), DType::F32, hd), DType::F32, mask.data(), t0, hd, out.data(), hd,
                   scratch.data());
  for (int64_t i = 0; i < s; ++i) {
    std::vector<double> w(size_t(T), 0.0);
    double mx = -1e300, sum = 0;
    for (int64_t t = 0; t <= t0 + i; ++t)
      if (mask[size_t(t)]) {
        double d = 0;
        for (int64_t j = 0; j < hd; ++j) d += double(q[size_t(i * hd + j)]) * k[size_t(t * hd + j)];
        w[size_t(t)] = d;
        mx = std::max(mx, d);
      }
    for (int64_t t = 0; t <= t0 + i; ++t)
      if (mask[size_t(t)]) sum += w[size_t(t)] = std::exp(w[size_t(t)] - mx);
    for (int64_t j = 0; j < hd; ++j) {
      double o = 0;
      for (int64_t t = 0; t <= t0 + i; ++t)
        if (mask[size_t(t)]) o += w[size_t(t)] / sum * v[size_t(t * hd + j)];
      EXPECT_NEAR(out[size_t(i * hd + j)], o, 1e-5);
    }
  }
}

TEST(Attention, AQueryThatSeesOnlyPaddingGetsZerosNotNaN) {
  const int64_t hd = 4;
  const auto q = random_floats(8, 12), k = random_floats(8, 13), v = random_floats(8, 14);
  const std::vector<uint8_t> mask = {0, 1};
  std::vector<float> out(8, 7.0f), scratch(2);
  cpu::attend_head(q.data(), hd, 2, cpu::contiguous_rows(k.data(), DType::F32, hd),
                   cpu::contiguous_rows(v.data(), DType::F32, hd), DType::F32, mask.data(), 0, hd, out.data(), hd,
                   scratch.data());
  for (int j = 0; j < hd; ++j) {
    EXPECT_EQ(out[size_t(j)], 0.0f);                            // query 0 sees only slot 0 (padding)
    EXPECT_NEAR(out[size_t(hd + j)], v[size_t(hd + j)], 1e-6);  // query 1 sees only slot 1
  }
}

TEST(Threads, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    cpu::set_threads(threads);
    std::vector<int> hits(1001, 0);
    cpu::parallel_for(1001, 7, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) ++hits[size_t(i)];
    });
    for (int h : hits) EXPECT_EQ(h, 1);
  }
  cpu::set_threads(0);
}
