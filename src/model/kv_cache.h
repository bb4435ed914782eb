// The KV cache: for each layer, the keys and values of every token each sequence has seen, laid
// out [sequence][head][slot][head_dim] so one head's keys are contiguous. Sequences are
// independent (ragged): each has its own length, its own count of real tokens (which gives the
// next position) and a mask of which slots are padding. Stored in the backend's kv_dtype (f16 by
// default: half the memory and bandwidth of f32; attention converts in registers).
#pragma once

#include <cstdint>
#include <vector>

#include "model/backend.h"
#include "opt/config.h"

namespace optforge {

class KvCache {
 public:
  KvCache(Backend& backend, const OptConfig& c, int64_t sequences, int64_t capacity);

  int64_t sequences() const { return sequences_; }
  int64_t capacity() const { return capacity_; }
  int64_t heads() const { return heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t length(int64_t seq) const { return length_[seq]; }
  int64_t n_valid(int64_t seq) const { return n_valid_[seq]; }  // real (non-padding) tokens
  const uint8_t* key_mask(int64_t seq) const { return mask_.data() + seq * capacity_; }

  // Layer l's keys or values for (seq, head): `capacity` rows of head_dim from row(seq, head, 0).
  KvTensor& keys(int64_t layer) { return k_[size_t(layer)]; }
  KvTensor& values(int64_t layer) { return v_[size_t(layer)]; }
  int64_t row(int64_t seq, int64_t head, int64_t slot) const { return (seq * heads_ + head) * capacity_ + slot; }

  // Before a step: checks room and records the new slots' padding mask. After: advances lengths.
  void begin(const Step& step);
  void commit(const Step& step);
  void clear(int64_t seq);
  // Makes `dst` a copy of `src` (n samples of one prompt share its prefill).
  void copy_sequence(int64_t src, int64_t dst);

 private:
  Backend& backend_;
  int64_t sequences_, capacity_, heads_, head_dim_;
  std::vector<KvTensor> k_, v_;
  std::vector<int64_t> length_, n_valid_;
  std::vector<uint8_t> mask_;
};

}  // namespace optforge
