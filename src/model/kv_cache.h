// The KV cache, paged as vLLM does it: one pool of fixed-size blocks (kKvBlockSize tokens each)
// shared by all sequences, each sequence holding a block table (its blocks in order), so memory
// follows the tokens actually cached rather than sequences x context. A block holds, per layer,
// the keys and values of block_size() tokens for every head. Each layer's keys (and values) are
// laid out [head][block][slot in block][head_dim]: one head's rows inside a block are contiguous
// (the attention kernels read a block as a matrix), and so are a head's rows across blocks with
// consecutive ids, which a sequence growing in a quiet pool gets, so decoding streams them as it
// would an unpaged cache. Blocks are reference-counted: fork() shares a
// sequence's blocks with another (n samples of one prompt), and a shared block is copied only
// when a sequence writes into it (copy-on-write, which only a partly filled last block ever
// needs). Each sequence also keeps its length, its count of real tokens (which gives the next
// position) and a mask of which slots are padding. Stored in the backend's kv_dtype (f16 by
// default: half the memory and bandwidth of f32; attention converts in registers).
// With prefix caching on (model/prefix_cache.h), every full block of a sequence without padding
// stays cached after the sequence ends, and attach_prefix() lets a new sequence start from the
// longest cached prefix of its tokens.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cpu/attention.h"
#include "model/backend.h"
#include "model/block_allocator.h"
#include "model/prefix_cache.h"
#include "opt/config.h"

namespace optforge {

struct Step;

class KvCache {
 public:
  // `sequences` sequence ids (0 .. sequences-1), each at most `capacity` tokens long, over a pool
  // of `blocks` blocks (0: enough for every sequence at full capacity). Memory is allocated up
  // front and touched as blocks are first used. Throws Error when any count is < 1.
  KvCache(Backend& backend, const OptConfig& c, int64_t sequences, int64_t capacity, int64_t blocks = 0);

  int64_t sequences() const { return int64_t(length_.size()); }
  int64_t capacity() const { return capacity_; }
  int64_t heads() const { return heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t block_size() const { return kKvBlockSize; }
  int64_t length(int64_t seq) const { return length_[size_t(seq)]; }
  int64_t n_valid(int64_t seq) const { return n_valid_[size_t(seq)]; }  // real (non-padding) tokens
  const uint8_t* key_mask(int64_t seq) const { return mask_[size_t(seq)].data(); }
  const std::vector<int32_t>& block_table(int64_t seq) const { return table_[size_t(seq)]; }
  const BlockAllocator& blocks() const { return alloc_; }
  // Blocks a step can take: free ones, and cached ones no sequence holds (evicted on demand).
  int64_t free_blocks() const;
  // Blocks sequences hold (the rest are free or only cached).
  int64_t used_blocks() const { return alloc_.total() - free_blocks(); }

  // Off by default (generate and score gain nothing from it); the server turns it on.
  void set_prefix_caching(bool on) { prefix_caching_ = on; }
  // Makes the empty sequence `seq` start with the longest cached prefix of `tokens` that is whole
  // blocks and leaves at least the last token to compute (its logits are wanted), sharing those
  // blocks. Returns the tokens attached (0 with prefix caching off); the caller feeds the rest.
  int64_t attach_prefix(int64_t seq, const std::vector<int32_t>& tokens);

  // Blocks that appending tokens to sequences ({seq, tokens} each, distinct sequences) takes from
  // the pool: new blocks, plus copies of shared, partly filled last blocks, except that the last
  // of a block's sharers to write keeps the block itself.
  int64_t blocks_needed(const std::vector<std::pair<int64_t, int64_t>>& appends) const;
  int64_t blocks_needed(int64_t seq, int64_t tokens) const { return blocks_needed({{seq, tokens}}); }

  // Layer l's keys or values of (seq, head), read through the sequence's block table. Valid until
  // the sequence's table changes (begin, clear, fork).
  cpu::KvRows keys(int64_t layer, int64_t seq, int64_t head) const;
  cpu::KvRows values(int64_t layer, int64_t seq, int64_t head) const;

  // Before a step: checks room, gives each sequence the blocks its new tokens go to (copying a
  // shared last block first) and records the new slots' padding mask. Throws Error when a
  // sequence would pass its capacity or the pool runs out (nothing is allocated then). After:
  // advances lengths.
  void begin(const Step& step);
  void commit(const Step& step);
  // Empties the sequence; its blocks go back to the pool (once no other sequence shares them).
  void clear(int64_t seq);
  // Makes `dst` hold what `src` holds by sharing src's blocks (no copy); dst is cleared first.
  void fork(int64_t src, int64_t dst);

 private:
  cpu::KvRows rows(const KvTensor& t, int64_t seq, int64_t head) const;
  void make_last_block_writable(int64_t seq);
  int32_t take_block();
  void cache_full_blocks(int64_t seq);

  Backend& backend_;
  int64_t capacity_, heads_, head_dim_;
  BlockAllocator alloc_;
  std::vector<KvTensor> k_, v_;  // per layer: [heads x blocks x block_size, head_dim]
  std::vector<std::vector<int32_t>> table_;
  std::vector<int64_t> length_, n_valid_;
  std::vector<std::vector<uint8_t>> mask_;
  bool prefix_caching_ = false;
  PrefixCache prefix_;
  std::vector<std::vector<int32_t>> tokens_;  // per sequence: its tokens (prefix cache keys)
  std::vector<std::vector<uint64_t>> nodes_;  // per sequence: the prefix cache node of each full block
};

}  // namespace optforge
