#include "model/block_allocator.h"

#include <limits>
#include <string>

#include "util/error.h"

namespace optforge {

BlockAllocator::BlockAllocator(int64_t blocks) {
  if (blocks < 1 || blocks > std::numeric_limits<int32_t>::max())
    throw Error("a KV cache pool needs 1 to 2^31-1 blocks, not " + std::to_string(blocks));
  refs_.assign(size_t(blocks), 0);
  free_.reserve(size_t(blocks));
  for (int64_t b = blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

void BlockAllocator::check(int32_t block) const {
  if (block < 0 || block >= total())
    throw Error("KV cache block " + std::to_string(block) + " is outside the pool of " + std::to_string(total()));
}

int32_t BlockAllocator::refcount(int32_t block) const {
  check(block);
  return refs_[size_t(block)];
}

std::optional<int32_t> BlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void BlockAllocator::retain(int32_t block) {
  check(block);
  if (refs_[size_t(block)] == 0)
    throw Error("KV cache block " + std::to_string(block) + " is free; it cannot be shared");
  ++refs_[size_t(block)];
}

void BlockAllocator::release(int32_t block) {
  check(block);
  if (refs_[size_t(block)] == 0) throw Error("KV cache block " + std::to_string(block) + " is already free");
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

}  // namespace optforge
