// Causal self-attention for one sequence and one head, over that sequence's cached keys/values.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace optforge::cpu {

// q: s query rows (row stride ldq), already scaled by head_dim^-0.5 as OPT does.
// keys, values: [t0 + s, hd] rows (stride hd), slots 0 .. t0+s-1 of the cache, stored as kv_dtype
// (F32, F16 or BF16: the KV cache's dtype) and converted to f32 in registers.
// key_mask[t]: 0 for a padding slot, which no query sees.
// Query i sits at slot t0 + i and attends to the unmasked slots <= t0 + i; scores, softmax and
// the output accumulate in f32, and the probabilities are normalised before multiplying V (HF's
// order). A query with no visible key (a left-padding row) gets zeros instead of NaN.
// out: s rows (stride ldo) of hd. scratch: t0 + s floats.
// The backend calls this with one query (a decode step); prompts take attend_head_blocked. The
// loop over several queries stays as the plain reference the tests hold the blocked path to.
void attend_head(const float* q, int64_t ldq, int64_t s, const void* keys, const void* values, DType kv_dtype,
                 const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo, float* scratch);

// The same result computed in blocks with an online softmax (flash-attention's order: the output
// is normalised once at the end, so it differs from attend_head by rounding only). Faster when s,
// the number of queries, is large (prompts); needs no scratch.
void attend_head_blocked(const float* q, int64_t ldq, int64_t s, const void* keys, const void* values, DType kv_dtype,
                         const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo);

}  // namespace optforge::cpu
