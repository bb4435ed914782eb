// Int4 weight-only quantization: the scheme (tensor/quantize_int4.h) on hand-made groups, and
// every int4 matrix-product path (AVX2 and AVX-512 streaming kernels where the CPU has them, the
// scalar loop, oneDNN through `linear`)
// against a double-precision product with the dequantized weights, on odd shapes (K not a multiple
// of 8 or 32: short last groups and an odd count of nibbles).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/onednn_gemm.h"
#include "kernels/cpu/skinny_int4.h"
#include "model/quantize.h"
#include "stored_values.h"
#include "tensor/quantize_int4.h"
#include "util/error.h"

using namespace optforge;
using optforge::test_util::random_floats;

namespace {

struct Int4Matrix {
  int64_t K;
  std::vector<uint8_t> packed;
  std::vector<uint16_t> scale;
  std::vector<float> deq;  // the weights the product stands for
  cpu::MatrixRef ref(int64_t N) const {
    cpu::MatrixRef m{DType::U8, packed.data(), N, K};
    m.group_scale = scale.data();
    return m;
  }
};

Int4Matrix quantized(int64_t N, int64_t K, uint32_t seed) {
  const auto w = random_floats(size_t(N * K), seed, 0.5f);
  const int64_t B = int4_row_bytes(K), G = int4_groups(K);
  Int4Matrix m{K, std::vector<uint8_t>(size_t(N * B)), std::vector<uint16_t>(size_t(N * G)),
               std::vector<float>(size_t(N * K))};
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_TRUE(quantize_row_int4(w.data() + n * K, K, m.packed.data() + n * B, m.scale.data() + n * G));
    dequantize_row_int4(m.packed.data() + n * B, m.scale.data() + n * G, K, m.deq.data() + n * K);
  }
  return m;
}

// The q values of a packed row (nibble - 8), in column order.
std::vector<int> values(const std::vector<uint8_t>& packed, int64_t K) {
  std::vector<int> q;
  for (int64_t k = 0; k < K; ++k) q.push_back((k % 2 ? packed[size_t(k / 2)] >> 4 : packed[size_t(k / 2)] & 15) - 8);
  return q;
}

}  // namespace

TEST(QuantizeRowInt4, MaxMagnitudeMapsToMinus8AndTiesRoundToEven) {
  // m = -16 -> scale f16(2) = 2; w / 2: 7 -> 3.5 -> 4, 5 -> 2.5 -> 2, -3 -> -1.5 -> -2, 1 -> 0.5 -> 0.
  std::vector<float> w{7.0f, 5.0f, -3.0f, 1.0f, -16.0f, 14.0f, 15.0f};
  std::vector<uint8_t> p(4);
  std::vector<uint16_t> s(1);
  ASSERT_TRUE(quantize_row_int4(w.data(), 7, p.data(), s.data()));
  EXPECT_EQ(f16_to_f32(s[0]), 2.0f);
  EXPECT_EQ(values(p, 7), (std::vector<int>{4, 2, -2, 0, -8, 7, 7}));  // 15 / 2 = 7.5 -> 8, clamped to 7
  EXPECT_EQ(p[3] >> 4, 8) << "odd K: the last high nibble holds q = 0";
  // +16 first: the scale is negative, so 16 maps to -8 and -16 clamps to 7.
  std::vector<float> v{16.0f, -16.0f};
  ASSERT_TRUE(quantize_row_int4(v.data(), 2, p.data(), s.data()));
  EXPECT_EQ(f16_to_f32(s[0]), -2.0f);
  EXPECT_EQ(values(p, 2), (std::vector<int>{-8, 7}));
}

TEST(QuantizeRowInt4, GroupsOf32WithAShortLastOne) {
  std::vector<float> w(40, 0.0f);
  w[3] = 8.0f;   // group 0: scale -1
  w[35] = 0.5f;  // group 1 (8 columns): scale f16(-0.0625)
  std::vector<uint8_t> p(20);
  std::vector<uint16_t> s(2);
  ASSERT_TRUE(quantize_row_int4(w.data(), 40, p.data(), s.data()));
  EXPECT_EQ(f16_to_f32(s[0]), -1.0f);
  EXPECT_EQ(f16_to_f32(s[1]), -0.0625f);
  const auto q = values(p, 40);
  EXPECT_EQ(q[3], -8);
  EXPECT_EQ(q[35], -8);
  EXPECT_EQ(q[0], 0);
}

TEST(QuantizeRowInt4, ZeroGroupAndUnderflowingScaleGiveZeros) {
  std::vector<float> w(64, 0.0f);
  const float tiny = std::numeric_limits<float>::denorm_min();  // |m| / 8 rounds to f16 0
  w[40] = tiny;
  std::vector<uint8_t> p(32, 0);
  std::vector<uint16_t> s(2, 1);
  ASSERT_TRUE(quantize_row_int4(w.data(), 64, p.data(), s.data()));
  EXPECT_EQ(f16_to_f32(s[0]), 0.0f);
  EXPECT_EQ(f16_to_f32(s[1]), 0.0f);
  for (uint8_t b : p) EXPECT_EQ(b, 0x88);
}

TEST(QuantizeRowInt4, NonFiniteOrF16OverflowIsRefused) {
  std::vector<uint8_t> p(2);
  std::vector<uint16_t> s(1);
  std::vector<float> w{1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  EXPECT_FALSE(quantize_row_int4(w.data(), 3, p.data(), s.data()));
  w[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(quantize_row_int4(w.data(), 3, p.data(), s.data()));
  w[1] = 1e6f;  // 1e6 / 8 > 65504
  EXPECT_FALSE(quantize_row_int4(w.data(), 3, p.data(), s.data()));
}

TEST(QuantizeMatrixInt4, NonFiniteWeightAndOddKAreErrorsNamingTheTensor) {
  Tensor t = Tensor::empty(DType::F32, {3, 4});
  std::fill_n(reinterpret_cast<float*>(t.storage->mutable_data()), 12, 0.0f);
  reinterpret_cast<float*>(t.storage->mutable_data())[9] = std::numeric_limits<float>::quiet_NaN();
  try {
    quantize_int4(t, "model.safetensors", "fc1.weight");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fc1.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("row 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  }
  EXPECT_THROW(quantize_int4(Tensor::empty(DType::F32, {3, 5}), "m", "fc2.weight"), Error);
  EXPECT_THROW(quantize_int4_lazy(Tensor::empty(DType::F32, {3, 5}), "m", "fc2.weight"), Error);
}

class Int4Linear : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

// Rows 1..70, K with short last groups, odd K (the kernel takes any K; models need an even one).
TEST_P(Int4Linear, EveryPathMatchesTheScalarReference) {
  const auto [M, K] = GetParam();
  const int64_t N = 37;  // tails of the 4-row tiles
  const auto x = random_floats(size_t(M * K), uint32_t(M * 1000 + K));
  const auto bias = random_floats(size_t(N), 2);
  const Int4Matrix w = quantized(N, K, uint32_t(K));
  const cpu::MatrixRef ref = w.ref(N);
  const double tol = 1e-5 + 2e-6 * double(K);
  std::vector<float> y(size_t(M * N), -1.0f), dnn(size_t(M * N), -1.0f);
  std::vector<float> scalar(size_t(M * N), -1.0f), simd(size_t(M * N), -1.0f), wide(size_t(M * N), -1.0f);
  cpu::linear(x.data(), M, ref, bias.data(), y.data());
  cpu::onednn_linear(x.data(), M, ref, bias.data(), dnn.data());
  cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), scalar.data(), N, 0, N, false);
  cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), simd.data(), N, 0, N, true, false);  // AVX2 if the CPU has it
  cpu::skinny_gemm(x.data(), K, M, ref, bias.data(), wide.data(), N, 0, N, true, true);   // AVX-512 if any
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const size_t i = size_t(m * N + n);
      double want = bias[size_t(n)];
      for (int64_t k = 0; k < K; ++k) want += double(x[size_t(m * K + k)]) * w.deq[size_t(n * K + k)];
      EXPECT_NEAR(scalar[i], want, tol) << "scalar m=" << m << " n=" << n;
      EXPECT_NEAR(simd[i], scalar[i], tol) << "avx2 vs scalar m=" << m << " n=" << n;
      EXPECT_NEAR(wide[i], scalar[i], tol) << "avx512 vs scalar m=" << m << " n=" << n;
      EXPECT_NEAR(y[i], scalar[i], tol) << "linear m=" << m << " n=" << n;
      EXPECT_NEAR(dnn[i], scalar[i], tol) << "oneDNN m=" << m << " n=" << n;
    }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, Int4Linear,
    ::testing::Combine(::testing::Values(int64_t(1), int64_t(2), int64_t(3), int64_t(4), int64_t(5), int64_t(17),
                                         int64_t(18), int64_t(40), int64_t(64), int64_t(70)),
                       ::testing::Values(int64_t(7), int64_t(32), int64_t(83), int64_t(100), int64_t(257))));

TEST(Int4Linear, LoadRowIsTheSchemesDequantization) {
  for (int64_t K : {int64_t(29), int64_t(64), int64_t(100)}) {
    const Int4Matrix w = quantized(5, K, 9);
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t r = 0; r < 5; ++r) {
      cpu::load_row(w.ref(5), r, row.data());
      for (int64_t k = 0; k < K; ++k) EXPECT_EQ(row[size_t(k)], w.deq[size_t(r * K + k)]) << r << "," << k;
    }
  }
}

TEST(Int4Linear, LazyQuantizationEqualsTheEagerOne) {
  const auto w = random_floats(size_t(70 * 84), 4, 0.5f);
  Tensor t = Tensor::empty(DType::F32, {70, 84});
  std::copy(w.begin(), w.end(), reinterpret_cast<float*>(t.storage->mutable_data()));
  const QuantizedTensors eager = quantize_int4(t, "m", "w"), lazy = quantize_int4_lazy(t, "m", "w");
  EXPECT_EQ(lazy.q.shape, eager.q.shape);
  EXPECT_EQ(lazy.scale.shape, eager.scale.shape);
  const Tensor lq = lazy.q.contiguous(), ls = lazy.scale.contiguous();
  EXPECT_EQ(std::memcmp(lq.data(), eager.q.data(), size_t(eager.q.nbytes())), 0);
  EXPECT_EQ(std::memcmp(ls.data(), eager.scale.data(), size_t(eager.scale.nbytes())), 0);
}
