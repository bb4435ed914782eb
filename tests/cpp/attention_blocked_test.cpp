// Attention over a KV cache stored as f32, f16 or bf16, per-query and blocked (online softmax),
// against softmax(q·kᵀ)·v computed directly in double on the same (rounded) cache values.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "stored_values.h"
#include "tensor/convert.h"

using namespace optforge;
using optforge::test_util::randn;
using optforge::test_util::store;
using optforge::test_util::Stored;

namespace {

// Query i (slot t0 + i) of the reference, in double; zeros when it sees no unmasked slot.
std::vector<double> reference(const std::vector<float>& q, const Stored& k, const Stored& v,
                              const std::vector<uint8_t>& mask, int64_t t0, int64_t hd, int64_t i) {
  std::vector<double> w(size_t(t0 + i + 1), 0.0), o(size_t(hd), 0.0);
  double mx = -1e300, sum = 0;
  for (int64_t t = 0; t <= t0 + i; ++t) {
    if (!mask[size_t(t)]) continue;
    double d = 0;
    for (int64_t j = 0; j < hd; ++j) d += double(q[size_t(i * hd + j)]) * k.values[size_t(t * hd + j)];
    mx = std::max(mx, w[size_t(t)] = d);
  }
  for (int64_t t = 0; t <= t0 + i; ++t)
    if (mask[size_t(t)]) sum += w[size_t(t)] = std::exp(w[size_t(t)] - mx);
  for (int64_t t = 0; t <= t0 + i; ++t)
    if (mask[size_t(t)])
      for (int64_t j = 0; j < hd; ++j) o[size_t(j)] += w[size_t(t)] / sum * v.values[size_t(t * hd + j)];
  return o;
}

}  // namespace

class CacheDtype : public ::testing::TestWithParam<DType> {};

// 150 queries after 37 cached slots: several query and key blocks, partial last blocks, head_dim
// 13 (SIMD tails), padding slots, and two leading queries that see only padding.
TEST_P(CacheDtype, PerQueryAndBlockedMatchDirectSoftmax) {
  const DType dt = GetParam();
  const int64_t hd = 13, t0 = 37, s = 150, T = t0 + s;
  const auto q = randn(size_t(s * hd), 1);
  const Stored k = store(randn(size_t(T * hd), 2), dt), v = store(randn(size_t(T * hd), 3), dt);
  std::vector<uint8_t> mask(size_t(T), 1);
  for (int64_t t = 0; t < t0 + 2; ++t) mask[size_t(t)] = 0;  // left padding up to slot t0 + 1
  for (int64_t t = 50; t < T; t += 7) mask[size_t(t)] = 0;
  std::vector<float> per_query(size_t(s * hd), 7.0f), blocked(size_t(s * hd), 7.0f), scratch(static_cast<size_t>(T));
  cpu::attend_head(q.data(), hd, s, cpu::contiguous_rows(k.bytes.data(), dt, hd),
                   cpu::contiguous_rows(v.bytes.data(), dt, hd), dt, mask.data(), t0, hd, per_query.data(), hd,
                   scratch.data());
  cpu::attend_head_blocked(q.data(), hd, s, cpu::contiguous_rows(k.bytes.data(), dt, hd),
                           cpu::contiguous_rows(v.bytes.data(), dt, hd), dt, mask.data(), t0, hd, blocked.data(), hd);
  for (int64_t i = 0; i < s; ++i) {
    const auto want = reference(q, k, v, mask, t0, hd, i);
    for (int64_t j = 0; j < hd; ++j) {
      EXPECT_NEAR(per_query[size_t(i * hd + j)], want[size_t(j)], 1e-5) << i << "," << j;
      EXPECT_NEAR(blocked[size_t(i * hd + j)], want[size_t(j)], 1e-5) << i << "," << j;
    }
  }
  EXPECT_EQ(blocked[0], 0.0f);  // query 0 sees only padding: zeros, not NaN
}

INSTANTIATE_TEST_SUITE_P(Attention, CacheDtype, ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// As the backend calls it: each head's queries and outputs are hd columns of wider rows (all heads
// concatenated), so the query and output strides are not hd; the columns around them stay as they
// were.
TEST_P(CacheDtype, BlockedReadsAndWritesStridedRows) {
  const DType dt = GetParam();
  const int64_t hd = 13, t0 = 70, s = 40, T = t0 + s, ldq = 3 * hd + 1, ldo = 2 * hd + 5;
  const auto q = randn(size_t(s * hd), 4);
  const Stored k = store(randn(size_t(T * hd), 5), dt), v = store(randn(size_t(T * hd), 6), dt);
  const std::vector<uint8_t> mask(size_t(T), 1);
  std::vector<float> wide_q(size_t(s * ldq), 1e6f), out(size_t(s * ldo), 7.0f);
  for (int64_t i = 0; i < s; ++i)
    for (int64_t j = 0; j < hd; ++j) wide_q[size_t(i * ldq + hd + j)] = q[size_t(i * hd + j)];
  cpu::attend_head_blocked(wide_q.data() + hd, ldq, s, cpu::contiguous_rows(k.bytes.data(), dt, hd),
                           cpu::contiguous_rows(v.bytes.data(), dt, hd), dt, mask.data(), t0, hd, out.data() + 1, ldo);
  for (int64_t i = 0; i < s; ++i) {
    const auto want = reference(q, k, v, mask, t0, hd, i);
    for (int64_t j = 0; j < hd; ++j) EXPECT_NEAR(out[size_t(i * ldo + 1 + j)], want[size_t(j)], 1e-5) << i << "," << j;
    EXPECT_EQ(out[size_t(i * ldo)], 7.0f);
    for (int64_t j = hd + 1; j < ldo; ++j) EXPECT_EQ(out[size_t(i * ldo + j)], 7.0f) << i << "," << j;
  }
}
