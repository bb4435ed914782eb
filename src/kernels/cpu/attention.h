// Causal self-attention for one sequence and one head, over that sequence's cached keys/values.
#pragma once

#include <cstdint>
#include <limits>

#include "tensor/dtype.h"

namespace optforge::cpu {

// One head's cached keys (or values) of one sequence, read through a block table (the paged KV
// cache, model/kv_cache.h): slot t is row t % block_size of block blocks[t / block_size], and
// within a block the head's rows are contiguous (stride row_bytes), so the kernels read whole
// blocks as contiguous matrices. `base` points at the head's first row in block 0; block b starts
// b * block_bytes further.
struct KvRows {
  const uint8_t* base = nullptr;
  const int32_t* blocks = nullptr;
  int64_t block_size = 0, block_bytes = 0, row_bytes = 0;
  const uint8_t* row(int64_t t) const {
    return base + blocks[t / block_size] * block_bytes + (t % block_size) * row_bytes;
  }
  // Rows from slot t that are contiguous in memory: to the end of t's block.
  int64_t run(int64_t t) const { return block_size - t % block_size; }
};

// Contiguous rows (one block holding every slot): a whole-context buffer as KvRows (the tests'
// references and any caller without a block table).
inline KvRows contiguous_rows(const void* rows, DType dtype, int64_t hd) {
  static constexpr int32_t kBlock0 = 0;
  return {static_cast<const uint8_t*>(rows), &kBlock0, std::numeric_limits<int64_t>::max() / 2, 0,
          hd * int64_t(dtype_size(dtype))};
}

// q: s query rows (row stride ldq), already scaled by head_dim^-0.5 as OPT does.
// keys, values: slots 0 .. t0+s-1 of the cache, hd values each, stored as kv_dtype
// (F32, F16 or BF16: the KV cache's dtype) and converted to f32 in registers.
// key_mask[t]: 0 for a padding slot, which no query sees.
// Query i sits at slot t0 + i and attends to the unmasked slots <= t0 + i; scores, softmax and
// the output accumulate in f32, and the probabilities are normalised before multiplying V (HF's
// order). A query with no visible key (a left-padding row) gets zeros instead of NaN.
// out: s rows (stride ldo) of hd. scratch: t0 + s floats.
// The backend calls this with one query (a decode step); prompts take attend_head_blocked. The
// loop over several queries stays as the plain reference the tests hold the blocked path to.
// Paged keys and values read through their block table (KvRows; contiguous_rows for one buffer).
void attend_head(const float* q, int64_t ldq, int64_t s, const KvRows& keys, const KvRows& values, DType kv_dtype,
                 const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo, float* scratch);

// The same result computed in blocks with an online softmax (flash-attention's order: the output
// is normalised once at the end, so it differs from attend_head by rounding only). Faster when s,
// the number of queries, is large (prompts); needs no scratch.
// A key block of the kernel may span several cache blocks.
void attend_head_blocked(const float* q, int64_t ldq, int64_t s, const KvRows& keys, const KvRows& values,
                         DType kv_dtype, const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo);

}  // namespace optforge::cpu
