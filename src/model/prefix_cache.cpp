#include "model/prefix_cache.h"

#include <algorithm>

namespace optforge {

size_t PrefixCache::KeyHash::operator()(const Key& k) const {
  uint64_t h = k.parent * 0x9E3779B97F4A7C15ull;  // FNV-1a style mixing over parent and tokens
  for (int32_t t : k.tokens) h = (h ^ uint64_t(uint32_t(t))) * 0x100000001B3ull;
  return size_t(h ^ (h >> 29));
}

PrefixCache::Key PrefixCache::key(uint64_t parent, const int32_t* tokens) {
  Key k{parent, {}};
  std::copy_n(tokens, kKvBlockSize, k.tokens.begin());
  return k;
}

std::optional<PrefixCache::Hit> PrefixCache::find(uint64_t parent, const int32_t* tokens) {
  auto it = map_.find(key(parent, tokens));
  if (it == map_.end()) return std::nullopt;
  it->second.last_use = ++clock_;
  return Hit{it->second.block, it->second.node};
}

uint64_t PrefixCache::insert(uint64_t parent, const int32_t* tokens, int32_t block, BlockAllocator& alloc) {
  auto [it, fresh] = map_.try_emplace(key(parent, tokens), Entry{block, next_node_, ++clock_});
  if (!fresh) return it->second.node;
  alloc.retain(block);
  return next_node_++;
}

int64_t PrefixCache::evictable(const BlockAllocator& alloc) const {
  return std::count_if(map_.begin(), map_.end(), [&](const auto& e) { return alloc.refcount(e.second.block) == 1; });
}

// A linear scan: evictions happen a block at a time as a step allocates, and the cache holds
// at most the pool's blocks.
bool PrefixCache::evict_one(BlockAllocator& alloc) {
  auto victim = map_.end();
  for (auto it = map_.begin(); it != map_.end(); ++it)
    if (alloc.refcount(it->second.block) == 1 &&
        (victim == map_.end() || it->second.last_use < victim->second.last_use))
      victim = it;
  if (victim == map_.end()) return false;
  alloc.release(victim->second.block);
  map_.erase(victim);
  return true;
}

}  // namespace optforge
