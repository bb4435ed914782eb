// The paged KV cache's bookkeeping: the block pool (allocate, share, free, exhaustion) and the
// cache over it (blocks taken as sequences grow, shared by fork, copied on write, given back).
// That attention through block tables gives the model's results is checked against transformers
// by tests/python/test_model.py and test_serve_paged.py.
#include <gtest/gtest.h>

#include <cstring>

#include "model/block_allocator.h"
#include "model/kv_cache.h"
#include "model/step.h"
#include "util/error.h"

using namespace optforge;

namespace {

TEST(BlockAllocator, AllocatesEveryBlockOnceThenRunsOut) {
  BlockAllocator a(3);
  EXPECT_EQ(a.free(), 3);
  EXPECT_EQ(*a.allocate(), 0);  // lowest first
  EXPECT_EQ(*a.allocate(), 1);
  EXPECT_EQ(*a.allocate(), 2);
  EXPECT_FALSE(a.allocate().has_value());
  EXPECT_EQ(a.used(), 3);
  EXPECT_EQ(a.free(), 0);
  a.release(1);
  EXPECT_EQ(a.free(), 1);
  EXPECT_EQ(*a.allocate(), 1);  // the most recently freed comes back first
}

TEST(BlockAllocator, SharedBlocksFreeWithTheirLastOwner) {
  BlockAllocator a(2);
  const int32_t b = *a.allocate();
  a.retain(b);
  a.retain(b);
  EXPECT_EQ(a.refcount(b), 3);
  a.release(b);
  a.release(b);
  EXPECT_EQ(a.free(), 1);
  a.release(b);
  EXPECT_EQ(a.refcount(b), 0);
  EXPECT_EQ(a.free(), 2);
}

TEST(BlockAllocator, RefusesMisuse) {
  EXPECT_THROW(BlockAllocator(0), Error);
  BlockAllocator a(2);
  EXPECT_THROW(a.release(0), Error);  // free already
  EXPECT_THROW(a.retain(1), Error);   // nobody owns it
  EXPECT_THROW(a.release(2), Error);  // outside the pool
  EXPECT_THROW(a.refcount(-1), Error);
}

struct CacheFixture : ::testing::Test {
  OptConfig c;
  std::unique_ptr<Backend> backend = make_cpu_backend(1, DType::F32);
  CacheFixture() { c.layers = 2, c.embed_dim = 8, c.heads = 2, c.ffn_dim = 8, c.input_dim = 8, c.max_positions = 64; }
  // Appends `n` tokens to each sequence in `seqs`, writing a recognisable value per (seq, slot)
  // into every layer's keys and values, as the backend's attention would.
  static void append(KvCache& cache, const std::vector<int64_t>& seqs, int64_t n) {
    std::vector<SeqTokens> batch;
    for (int64_t s : seqs) batch.push_back({s, std::vector<int32_t>(size_t(n), 5), {}});
    const Step step = plan_step(cache, batch);
    cache.begin(step);
    for (const Step::Seq& s : step.seqs)
      for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < cache.heads(); ++h)
          for (int64_t i = 0; i < s.rows; ++i) {
            const float v = float(s.seq * 1000 + (s.start + i) * 10 + h);
            auto* k = reinterpret_cast<float*>(const_cast<uint8_t*>(cache.keys(l, s.seq, h).row(s.start + i)));
            auto* vv = reinterpret_cast<float*>(const_cast<uint8_t*>(cache.values(l, s.seq, h).row(s.start + i)));
            for (int64_t j = 0; j < cache.head_dim(); ++j) k[j] = vv[j] = v;
          }
    cache.commit(step);
  }
  static float key(const KvCache& cache, int64_t seq, int64_t h, int64_t slot) {
    return *reinterpret_cast<const float*>(cache.keys(1, seq, h).row(slot));
  }
};

TEST_F(CacheFixture, SequencesTakeBlocksAsTheyGrowAndGiveThemBack) {
  KvCache cache(*backend, c, 2, 64, 5);
  EXPECT_EQ(cache.blocks().total(), 5);
  append(cache, {0}, 17);  // 16 + 1: two blocks
  EXPECT_EQ(cache.blocks().used(), 2);
  EXPECT_EQ(cache.blocks_needed(0, 15), 0);
  EXPECT_EQ(cache.blocks_needed(0, 16), 1);
  append(cache, {1}, 3);
  EXPECT_EQ(cache.blocks().used(), 3);
  // Each sequence reads its own rows through its table.
  EXPECT_EQ(key(cache, 0, 1, 16), 0 * 1000 + 160 + 1);
  EXPECT_EQ(key(cache, 1, 0, 2), 1000 + 20);
  cache.clear(0);
  EXPECT_EQ(cache.blocks().used(), 1);
  EXPECT_EQ(cache.length(0), 0);
}

TEST_F(CacheFixture, ForkSharesBlocksAndCopiesOnlyAPartlyFilledLastBlock) {
  KvCache cache(*backend, c, 3, 64, 6);
  append(cache, {0}, 20);  // a full block and 4 slots of a second
  cache.fork(0, 1);
  cache.fork(0, 2);
  EXPECT_EQ(cache.blocks().used(), 2);  // shared, not copied
  EXPECT_EQ(cache.block_table(1), cache.block_table(0));
  EXPECT_EQ(cache.blocks().refcount(cache.block_table(0)[0]), 3);
  // All three write into the shared tail: two copies; the last writer keeps the block.
  EXPECT_EQ(cache.blocks_needed({{0, 1}, {1, 1}, {2, 1}}), 2);
  append(cache, {0, 1, 2}, 1);
  EXPECT_EQ(cache.blocks().used(), 4);
  EXPECT_EQ(cache.block_table(1)[0], cache.block_table(0)[0]);  // the full block stays shared
  EXPECT_NE(cache.block_table(1)[1], cache.block_table(0)[1]);
  EXPECT_NE(cache.block_table(2)[1], cache.block_table(1)[1]);
  for (int64_t s : {1, 2}) {
    EXPECT_EQ(key(cache, s, 1, 19), 0 * 1000 + 190 + 1);         // the copy holds sequence 0's rows
    EXPECT_EQ(key(cache, s, 1, 20), float(s * 1000 + 200 + 1));  // and its own new one
  }
  EXPECT_EQ(key(cache, 0, 1, 20), 0 * 1000 + 200 + 1);
  cache.clear(0);
  cache.clear(1);
  EXPECT_EQ(cache.blocks().used(), 2);  // sequence 2's blocks
  cache.clear(2);
  EXPECT_EQ(cache.blocks().free(), 6);
}

TEST_F(CacheFixture, AStepThatDoesNotFitTakesNothing) {
  KvCache cache(*backend, c, 2, 64, 3);
  append(cache, {0}, 32);
  std::vector<SeqTokens> batch = {{0, {5}, {}}, {1, std::vector<int32_t>(17, 5), {}}};  // 1 + 2 blocks
  const Step step = plan_step(cache, batch);
  EXPECT_THROW(cache.begin(step), Error);
  EXPECT_EQ(cache.blocks().used(), 2);
  EXPECT_TRUE(cache.block_table(1).empty());
  KvCache capped(*backend, c, 1, 20, 4);  // a sequence passing its capacity
  EXPECT_THROW(capped.begin(plan_step(capped, {{0, std::vector<int32_t>(21, 5), {}}})), Error);
}

}  // namespace
