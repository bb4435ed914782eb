// The KV cache's pool of fixed-size blocks (vLLM's paged attention): blocks are numbered
// 0 .. total-1 and reference-counted, so n samples of one prompt can share the prompt's blocks.
// A block is free when its count is 0. Not thread-safe: one thread (the model's) owns the cache.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace optforge {

// Tokens per KV cache block: vLLM's default; the prefill kernel's key block (64) is a multiple.
inline constexpr int64_t kKvBlockSize = 16;

// Blocks that hold `tokens` tokens.
inline int64_t kv_blocks_for(int64_t tokens) { return (tokens + kKvBlockSize - 1) / kKvBlockSize; }

class BlockAllocator {
 public:
  // Throws Error when blocks < 1 or does not fit an int32_t block id.
  explicit BlockAllocator(int64_t blocks);

  int64_t total() const { return int64_t(refs_.size()); }
  int64_t free() const { return int64_t(free_.size()); }
  int64_t used() const { return total() - free(); }
  int32_t refcount(int32_t block) const;  // throws Error for an id outside the pool

  // A free block with refcount 1, or none when the pool is exhausted. The lowest-numbered free
  // blocks come first at the start and the most recently freed after, so the memory touched
  // follows the peak use rather than the pool's size.
  std::optional<int32_t> allocate();
  // One more owner of a used block (a sample sharing it). Throws Error for a free block.
  void retain(int32_t block);
  // One owner fewer; the block is free when none is left. Throws Error for a free block.
  void release(int32_t block);

 private:
  void check(int32_t block) const;
  std::vector<int32_t> refs_;  // per block: its owners
  std::vector<int32_t> free_;  // a stack: back() is allocated next
};

}  // namespace optforge
