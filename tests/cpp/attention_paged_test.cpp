// Attention through a block table (the paged KV cache) gives exactly what it gives over the same
// rows stored contiguously: the blocks here are scattered over a larger pool in shuffled order,
// with other data between them, and both kernels (per-query for decode, blocked for prompts) must
// match the contiguous call bit for bit (each score and each accumulation runs in the same order;
// the contiguous path is held to a double-precision softmax by attention_blocked_test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "stored_values.h"

using namespace optforge;
using optforge::test_util::randn;
using optforge::test_util::store;
using optforge::test_util::Stored;

namespace {

constexpr int64_t kBlock = 16;

// The rows of `contiguous` ([T, hd] as stored) copied block by block into a pool of `pool_blocks`
// blocks filled with garbage, at the blocks `table` names.
struct Paged {
  std::vector<uint8_t> pool;
  std::vector<int32_t> table;
  cpu::KvRows rows(int64_t row_bytes) const {
    return {pool.data(), table.data(), kBlock, kBlock * row_bytes, row_bytes};
  }
};

Paged scatter(const Stored& contiguous, int64_t T, int64_t row_bytes, unsigned seed) {
  const int64_t blocks = (T + kBlock - 1) / kBlock, pool_blocks = blocks + 5;
  Paged p{std::vector<uint8_t>(size_t(pool_blocks * kBlock * row_bytes), 0x7f), {}};
  std::vector<int32_t> ids(static_cast<size_t>(pool_blocks));
  for (int32_t i = 0; i < int32_t(pool_blocks); ++i) ids[size_t(i)] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  p.table.assign(ids.begin(), ids.begin() + blocks);
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(p.pool.data() + (p.table[size_t(t / kBlock)] * kBlock + t % kBlock) * row_bytes,
                contiguous.bytes.data() + t * row_bytes, size_t(row_bytes));
  return p;
}

class PagedDtype : public ::testing::TestWithParam<DType> {};

TEST_P(PagedDtype, BlockTableReadsEqualContiguousReads) {
  const DType dt = GetParam();
  const int64_t hd = 13, row_bytes = hd * int64_t(dtype_size(dt));
  // A prompt of 150 after 37 cached slots (several kernel key blocks of 64 spanning cache blocks),
  // and single decode queries at a block boundary and inside a block.
  for (auto [t0, s] : {std::pair<int64_t, int64_t>{37, 150}, {63, 1}, {64, 1}, {100, 1}, {0, 5}}) {
    const int64_t T = t0 + s;
    const auto q = randn(size_t(s * hd), unsigned(1 + t0));
    const Stored k = store(randn(size_t(T * hd), 2), dt), v = store(randn(size_t(T * hd), 3), dt);
    std::vector<uint8_t> mask(size_t(T), 1);
    for (int64_t t = 3; t < T; t += 7) mask[size_t(t)] = 0;
    const Paged pk = scatter(k, T, row_bytes, 11), pv = scatter(v, T, row_bytes, 12);
    std::vector<float> want(size_t(s * hd)), got(size_t(s * hd)), scratch(static_cast<size_t>(T));
    cpu::attend_head(q.data(), hd, s, cpu::contiguous_rows(k.bytes.data(), dt, hd),
                     cpu::contiguous_rows(v.bytes.data(), dt, hd), dt, mask.data(), t0, hd, want.data(), hd,
                     scratch.data());
    cpu::attend_head(q.data(), hd, s, pk.rows(row_bytes), pv.rows(row_bytes), dt, mask.data(), t0, hd, got.data(), hd,
                     scratch.data());
    EXPECT_EQ(got, want) << "per query, t0 " << t0;
    cpu::attend_head_blocked(q.data(), hd, s, cpu::contiguous_rows(k.bytes.data(), dt, hd),
                             cpu::contiguous_rows(v.bytes.data(), dt, hd), dt, mask.data(), t0, hd, want.data(), hd);
    cpu::attend_head_blocked(q.data(), hd, s, pk.rows(row_bytes), pv.rows(row_bytes), dt, mask.data(), t0, hd,
                             got.data(), hd);
    EXPECT_EQ(got, want) << "blocked, t0 " << t0;
  }
}

INSTANTIATE_TEST_SUITE_P(Attention, PagedDtype, ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
