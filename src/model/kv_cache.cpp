#include "model/kv_cache.h"

#include <algorithm>
#include <map>
#include <string>

#include "model/step.h"
#include "util/error.h"

namespace optforge {
namespace {

int64_t pool_size(int64_t sequences, int64_t capacity, int64_t blocks) {
  if (sequences <= 0 || capacity <= 0) throw Error("a KV cache needs at least one sequence and one slot");
  return blocks > 0 ? blocks : sequences * kv_blocks_for(capacity);
}

}  // namespace

KvCache::KvCache(Backend& backend, const OptConfig& c, int64_t sequences, int64_t capacity, int64_t blocks)
    : backend_(backend),
      capacity_(capacity),
      heads_(c.heads),
      head_dim_(c.head_dim()),
      alloc_(pool_size(sequences, capacity, blocks)),
      table_(size_t(sequences)),
      length_(size_t(sequences), 0),
      n_valid_(size_t(sequences), 0),
      mask_(size_t(sequences)),
      tokens_(size_t(sequences)),
      nodes_(size_t(sequences)) {
  const int64_t rows = alloc_.total() * heads_ * kKvBlockSize;
  for (int64_t l = 0; l < c.layers; ++l) {
    k_.push_back(backend.alloc_kv(rows, head_dim_));
    v_.push_back(backend.alloc_kv(rows, head_dim_));
  }
}

int64_t KvCache::blocks_needed(const std::vector<std::pair<int64_t, int64_t>>& appends) const {
  int64_t n = 0;
  std::map<int32_t, int32_t> writers;  // shared partly filled blocks: sequences writing into each
  for (const auto& [seq, tokens] : appends) {
    if (tokens <= 0) continue;
    const int64_t len = length(seq);
    const std::vector<int32_t>& t = table_[size_t(seq)];
    n += kv_blocks_for(len + tokens) - int64_t(t.size());
    if (len % kKvBlockSize != 0 && alloc_.refcount(t.back()) > 1) ++n, ++writers[t.back()];
  }
  for (const auto& [block, w] : writers)
    if (w == alloc_.refcount(block)) --n;
  return n;
}

cpu::KvRows KvCache::rows(const KvTensor& t, int64_t seq, int64_t head) const {
  const int64_t row_bytes = head_dim_ * int64_t(dtype_size(t.dtype));
  return {t.row(head * alloc_.total() * kKvBlockSize), table_[size_t(seq)].data(), kKvBlockSize,
          kKvBlockSize * row_bytes, row_bytes};
}

cpu::KvRows KvCache::keys(int64_t layer, int64_t seq, int64_t head) const { return rows(k_[size_t(layer)], seq, head); }

cpu::KvRows KvCache::values(int64_t layer, int64_t seq, int64_t head) const {
  return rows(v_[size_t(layer)], seq, head);
}

int64_t KvCache::free_blocks() const { return alloc_.free() + (prefix_caching_ ? prefix_.evictable(alloc_) : 0); }

int32_t KvCache::take_block() {
  std::optional<int32_t> b = alloc_.allocate();
  if (!b && prefix_caching_ && prefix_.evict_one(alloc_)) b = alloc_.allocate();
  if (!b)
    throw Error("the KV cache is full (" + std::to_string(alloc_.total()) + " blocks of " +
                std::to_string(kKvBlockSize) + " tokens)");
  return *b;
}

// A sequence about to write into a block another sequence shares gets its own copy first.
void KvCache::make_last_block_writable(int64_t seq) {
  std::vector<int32_t>& t = table_[size_t(seq)];
  if (length(seq) % kKvBlockSize == 0 || alloc_.refcount(t.back()) == 1) return;
  const int32_t copy = take_block(), shared = t.back();
  for (size_t l = 0; l < k_.size(); ++l)
    for (int64_t h = 0; h < heads_; ++h) {
      const int64_t from = (h * alloc_.total() + shared) * kKvBlockSize,
                    to = (h * alloc_.total() + copy) * kKvBlockSize;
      backend_.copy_kv_rows(k_[l], from, k_[l], to, kKvBlockSize);
      backend_.copy_kv_rows(v_[l], from, v_[l], to, kKvBlockSize);
    }
  alloc_.release(shared);
  t.back() = copy;
}

void KvCache::begin(const Step& step) {
  std::vector<std::pair<int64_t, int64_t>> appends;
  for (const Step::Seq& s : step.seqs) {
    if (s.start + s.rows > capacity_)
      throw Error("sequence " + std::to_string(s.seq) + " needs " + std::to_string(s.start + s.rows) +
                  " cache slots, the cache holds " + std::to_string(capacity_));
    appends.emplace_back(s.seq, s.rows);
  }
  const int64_t need = blocks_needed(appends);
  if (need > free_blocks())
    throw Error("the step needs " + std::to_string(need) + " KV cache blocks; " + std::to_string(free_blocks()) +
                " of " + std::to_string(alloc_.total()) + " are free");
  for (const Step::Seq& s : step.seqs) {
    if (s.rows > 0) make_last_block_writable(s.seq);
    std::vector<int32_t>& t = table_[size_t(s.seq)];
    while (int64_t(t.size()) < kv_blocks_for(s.start + s.rows)) t.push_back(take_block());
    std::vector<uint8_t>& m = mask_[size_t(s.seq)];
    m.resize(size_t(s.start + s.rows));
    std::copy_n(step.mask.begin() + s.row0, s.rows, m.begin() + s.start);
    tokens_[size_t(s.seq)].resize(size_t(s.start));  // a step that failed before commit wrote nothing
    tokens_[size_t(s.seq)].insert(tokens_[size_t(s.seq)].end(), step.tokens.begin() + s.row0,
                                  step.tokens.begin() + s.row0 + s.rows);
  }
}

void KvCache::commit(const Step& step) {
  for (const Step::Seq& s : step.seqs) {
    length_[size_t(s.seq)] += s.rows;
    n_valid_[size_t(s.seq)] += std::count(step.mask.begin() + s.row0, step.mask.begin() + s.row0 + s.rows, uint8_t(1));
    if (prefix_caching_) cache_full_blocks(s.seq);
  }
}

// The sequence's blocks that became full are cached under their prefix. A sequence with padding
// is not: its positions depend on the mask, which the key does not hold.
void KvCache::cache_full_blocks(int64_t seq) {
  if (n_valid(seq) != length(seq)) return;
  std::vector<uint64_t>& nodes = nodes_[size_t(seq)];
  const std::vector<int32_t>& t = tokens_[size_t(seq)];
  for (int64_t b = int64_t(nodes.size()); b < length(seq) / kKvBlockSize; ++b) {
    const uint64_t parent = b == 0 ? 0 : nodes[size_t(b - 1)];
    nodes.push_back(prefix_.insert(parent, t.data() + b * kKvBlockSize, table_[size_t(seq)][size_t(b)], alloc_));
  }
}

int64_t KvCache::attach_prefix(int64_t seq, const std::vector<int32_t>& tokens) {
  if (!prefix_caching_ || length(seq) != 0) return 0;
  const int64_t whole = (int64_t(tokens.size()) - 1) / kKvBlockSize;  // the last token is computed
  uint64_t parent = 0;
  int64_t b = 0;
  for (; b < whole; ++b) {
    const std::optional<PrefixCache::Hit> hit = prefix_.find(parent, tokens.data() + b * kKvBlockSize);
    if (!hit) break;
    alloc_.retain(hit->block);
    table_[size_t(seq)].push_back(hit->block);
    nodes_[size_t(seq)].push_back(hit->node);
    parent = hit->node;
  }
  const int64_t n = b * kKvBlockSize;
  tokens_[size_t(seq)].assign(tokens.begin(), tokens.begin() + n);
  mask_[size_t(seq)].assign(size_t(n), 1);
  length_[size_t(seq)] = n_valid_[size_t(seq)] = n;
  return n;
}

void KvCache::clear(int64_t seq) {
  for (int32_t b : table_[size_t(seq)]) alloc_.release(b);
  table_[size_t(seq)].clear();
  mask_[size_t(seq)].clear();
  tokens_[size_t(seq)].clear();
  nodes_[size_t(seq)].clear();
  length_[size_t(seq)] = 0;
  n_valid_[size_t(seq)] = 0;
}

void KvCache::fork(int64_t src, int64_t dst) {
  if (src == dst) return;
  clear(dst);
  for (int32_t b : table_[size_t(src)]) alloc_.retain(b);
  table_[size_t(dst)] = table_[size_t(src)];
  mask_[size_t(dst)] = mask_[size_t(src)];
  tokens_[size_t(dst)] = tokens_[size_t(src)];
  nodes_[size_t(dst)] = nodes_[size_t(src)];
  length_[size_t(dst)] = length_[size_t(src)];
  n_valid_[size_t(dst)] = n_valid_[size_t(src)];
}

}  // namespace optforge
