// The paged KV cache's bookkeeping: the block pool (allocate, share, free, exhaustion) and the
// cache over it (blocks taken as sequences grow, shared by fork, copied on write, given back).
// The prefix cache: exact keys, LRU eviction of blocks no sequence holds, attach_prefix.
// That attention through block tables gives the model's results is checked against transformers
// by tests/python/test_model.py and test_serve_paged.py.
#include <gtest/gtest.h>

#include <cstring>

#include "model/block_allocator.h"
#include "model/kv_cache.h"
#include "model/prefix_cache.h"
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

std::vector<int32_t> block_of(int32_t first) {
  std::vector<int32_t> t(kKvBlockSize);
  for (int64_t i = 0; i < kKvBlockSize; ++i) t[size_t(i)] = first + int32_t(i);
  return t;
}

TEST(PrefixCache, KeysNameTheWholePrefixAndEvictionIsLeastRecentlyUsed) {
  BlockAllocator a(4);
  PrefixCache pc;
  const auto x = block_of(10), y = block_of(50);
  const int32_t b0 = *a.allocate(), b1 = *a.allocate(), b2 = *a.allocate();
  const uint64_t n0 = pc.insert(0, x.data(), b0, a);
  const uint64_t n1 = pc.insert(n0, y.data(), b1, a);  // x then y
  const uint64_t n2 = pc.insert(0, y.data(), b2, a);   // y at the start: another prefix
  EXPECT_NE(n1, n2);
  EXPECT_EQ(pc.insert(0, x.data(), b2, a), n0);  // cached already: the first block stays, b2 gains nothing
  EXPECT_EQ(a.refcount(b2), 2);
  EXPECT_EQ(pc.find(n0, y.data())->block, b1);
  EXPECT_EQ(pc.find(0, y.data())->block, b2);
  EXPECT_FALSE(pc.find(n2, y.data()).has_value());  // y after y: never cached
  EXPECT_FALSE(pc.find(0, block_of(11).data()).has_value());
  EXPECT_EQ(pc.evictable(a), 0);  // the sequences still hold them
  for (int32_t b : {b0, b1, b2}) a.release(b);
  EXPECT_EQ(pc.evictable(a), 3);
  EXPECT_EQ(a.free(), 1);
  pc.find(0, x.data());  // x is now the most recently used, then y-first's (found above) ...
  ASSERT_TRUE(pc.evict_one(a));
  EXPECT_FALSE(pc.find(n0, y.data()).has_value());  // ... so x-then-y, used longest ago, went first
  EXPECT_EQ(a.free(), 2);
  ASSERT_TRUE(pc.evict_one(a));
  ASSERT_TRUE(pc.evict_one(a));
  EXPECT_FALSE(pc.evict_one(a));
  EXPECT_EQ(a.free(), 4);
  EXPECT_EQ(pc.size(), 0);
}

TEST_F(CacheFixture, APromptStartsFromItsLongestCachedPrefix) {
  KvCache cache(*backend, c, 2, 64, 4);
  cache.set_prefix_caching(true);
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < 40; ++i) prompt.push_back(3 + i);
  const Step step = plan_step(cache, {{0, prompt, {}}});
  cache.begin(step);
  cache.commit(step);  // 2 full blocks cached, 8 tokens in a third
  EXPECT_EQ(cache.blocks().used(), 3);
  cache.clear(0);
  EXPECT_EQ(cache.free_blocks(), 4);  // cached blocks no sequence holds count as free
  EXPECT_EQ(cache.used_blocks(), 0);
  std::vector<int32_t> other = prompt;
  other[20] = 7;  // differs in the second block
  EXPECT_EQ(cache.attach_prefix(1, other), 16);
  EXPECT_EQ(cache.length(1), 16);
  EXPECT_EQ(cache.n_valid(1), 16);
  cache.clear(1);
  // The whole prompt is cached up to 32: a prompt of exactly 32 recomputes its last block.
  EXPECT_EQ(cache.attach_prefix(1, {prompt.begin(), prompt.begin() + 32}), 16);
  cache.clear(1);
  EXPECT_EQ(cache.attach_prefix(1, prompt), 32);
  EXPECT_EQ(cache.block_table(1).size(), 2u);
  // Allocating past the free list evicts what no sequence holds, least recently used first.
  cache.clear(1);
  const Step more = plan_step(cache, {{0, std::vector<int32_t>(48, 9), {}}});
  cache.begin(more);  // 3 blocks: the 2 free ones and the prompt's first block (used before its second)
  cache.commit(more);
  EXPECT_EQ(cache.blocks().free(), 0);
  EXPECT_EQ(cache.free_blocks(), 1);             // the prompt's second block, cached still
  EXPECT_EQ(cache.attach_prefix(1, prompt), 0);  // but unreachable without the first
  cache.set_prefix_caching(false);
  EXPECT_EQ(cache.attach_prefix(0, prompt), 0);
}

}  // namespace
