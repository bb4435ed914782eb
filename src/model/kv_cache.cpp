#include "model/kv_cache.h"

#include <algorithm>

#include "model/step.h"
#include "util/error.h"

namespace optforge {

KvCache::KvCache(Backend& backend, const OptConfig& c, int64_t sequences, int64_t capacity)
    : backend_(backend),
      sequences_(sequences),
      capacity_(capacity),
      heads_(c.heads),
      head_dim_(c.head_dim()),
      length_(size_t(sequences), 0),
      n_valid_(size_t(sequences), 0),
      mask_(size_t(sequences * capacity), 0) {
  if (sequences <= 0 || capacity <= 0) throw Error("a KV cache needs at least one sequence and one slot");
  for (int64_t l = 0; l < c.layers; ++l) {
    k_.push_back(backend.alloc_kv(sequences * heads_ * capacity, head_dim_));
    v_.push_back(backend.alloc_kv(sequences * heads_ * capacity, head_dim_));
  }
}

void KvCache::begin(const Step& step) {
  for (const Step::Seq& s : step.seqs) {
    if (s.start + s.rows > capacity_)
      throw Error("sequence " + std::to_string(s.seq) + " needs " + std::to_string(s.start + s.rows) +
                  " cache slots, the cache holds " + std::to_string(capacity_));
    std::copy_n(step.mask.begin() + s.row0, s.rows, mask_.begin() + s.seq * capacity_ + s.start);
  }
}

void KvCache::commit(const Step& step) {
  for (const Step::Seq& s : step.seqs) {
    length_[s.seq] += s.rows;
    n_valid_[s.seq] += std::count(step.mask.begin() + s.row0, step.mask.begin() + s.row0 + s.rows, uint8_t(1));
  }
}

void KvCache::clear(int64_t seq) {
  length_[seq] = 0;
  n_valid_[seq] = 0;
}

void KvCache::copy_sequence(int64_t src, int64_t dst) {
  if (src == dst) return;
  const int64_t n = length_[src];
  for (size_t l = 0; l < k_.size(); ++l)
    for (int64_t h = 0; h < heads_; ++h) {
      backend_.copy_kv_rows(k_[l], row(src, h, 0), k_[l], row(dst, h, 0), n);
      backend_.copy_kv_rows(v_[l], row(src, h, 0), v_[l], row(dst, h, 0), n);
    }
  std::copy_n(mask_.begin() + src * capacity_, n, mask_.begin() + dst * capacity_);
  length_[dst] = n;
  n_valid_[dst] = n_valid_[src];
}

}  // namespace optforge
