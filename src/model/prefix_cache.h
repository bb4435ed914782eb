// Automatic prefix caching (vLLM's): full KV cache blocks stay cached after their sequence ends,
// keyed by everything before and in them, so a later sequence starting with the same tokens
// reuses them instead of computing them again. A key is (the node of the prefix before the
// block, the block's kKvBlockSize tokens), and each cached block gets a node number of its own,
// never reused, so a key names the whole prefix exactly (no hash collision can alias two
// prefixes). The cache holds one reference on each block it keeps; a block only it holds is
// evictable, least recently used first, when the pool needs a block.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "model/block_allocator.h"

namespace optforge {

class PrefixCache {
 public:
  struct Hit {
    int32_t block;
    uint64_t node;
  };
  // The cached block holding tokens[0 .. kKvBlockSize) after the prefix `parent` (0: the start
  // of a sequence), marked as just used; none when it is not cached.
  std::optional<Hit> find(uint64_t parent, const int32_t* tokens);
  // Caches `block` as holding tokens[0 .. kKvBlockSize) after `parent`, taking a reference on it,
  // and returns its node; when that prefix is cached already (another sequence computed it),
  // returns the cached node and takes nothing.
  uint64_t insert(uint64_t parent, const int32_t* tokens, int32_t block, BlockAllocator& alloc);
  // Cached blocks no sequence holds (the pool can take them back).
  int64_t evictable(const BlockAllocator& alloc) const;
  // Drops the least recently used cached block no sequence holds, freeing it. False if none.
  bool evict_one(BlockAllocator& alloc);
  int64_t size() const { return int64_t(map_.size()); }

 private:
  struct Key {
    uint64_t parent;
    std::array<int32_t, kKvBlockSize> tokens;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    int32_t block;
    uint64_t node, last_use;
  };
  static Key key(uint64_t parent, const int32_t* tokens);

  std::unordered_map<Key, Entry, KeyHash> map_;
  uint64_t next_node_ = 1, clock_ = 0;
};

}  // namespace optforge
