// Prefill attention in blocks (flash-attention's order): a block of queries meets the cache a
// block of keys at a time, with a running max and sum per query (online softmax), so each key and
// value row stays in L1 while the block's queries use it, instead of every query streaming the
// whole cache. Both products per block read the cache as stored (f32, f16 or bf16), converting in
// registers: the scores Q·Kᵀ are the streaming matrix kernel (gemm.h) with the key block as W, the
// update P·V a register tile of its own (attention_tiles.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_tiles.h"
#include "kernels/cpu/gemm.h"

namespace optforge::cpu {
namespace {

constexpr int64_t kQueries = 16, kKeys = 64;  // block sizes: a key block of hd=128 f32 is 32 KiB
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Per query block: the running max m, sum l and unnormalised output acc of each query.
struct QueryBlock {
  const float* q;
  int64_t ldq, rows, first_slot;  // query r sits at slot first_slot + r
  std::vector<float> m, l, acc, scores;
};

// Scores of the block's queries against keys [j0, j0 + n) become probabilities in place (0 where
// a key is padding or after the query), and each query's running max, sum and output are rescaled
// to its new max. A query that sees none of these keys keeps its state and gets zeros.
void softmax_step(QueryBlock& b, const uint8_t* key_mask, int64_t j0, int64_t n, int64_t hd) {
  for (int64_t r = 0; r < b.rows; ++r) {
    float* s = b.scores.data() + r * kKeys;
    const int64_t end = b.first_slot + r + 1 - j0;  // causal: slots <= the query's
    float mb = kNegInf;
    for (int64_t t = 0; t < n; ++t) {
      if (t >= end || !key_mask[j0 + t])
        s[t] = kNegInf;
      else
        mb = std::max(mb, s[t]);
    }
    if (mb == kNegInf) {
      std::fill(s, s + n, 0.0f);
      continue;
    }
    float& m = b.m[size_t(r)];
    const float m_new = std::max(m, mb);
    const float rescale = m == kNegInf ? 0.0f : std::exp(m - m_new);
    float* acc = b.acc.data() + r * hd;
    if (rescale != 1.0f)
      for (int64_t j = 0; j < hd; ++j) acc[j] *= rescale;
    float sum = b.l[size_t(r)] * rescale;
    for (int64_t t = 0; t < n; ++t) sum += s[t] = std::exp(s[t] - m_new);  // exp(-inf) = 0
    m = m_new;
    b.l[size_t(r)] = sum;
  }
}

}  // namespace

void attend_head_blocked(const float* q, int64_t ldq, int64_t s, const KvRows& keys, const KvRows& values,
                         DType kv_dtype, const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo) {
  QueryBlock b;
  b.scores.resize(size_t(kQueries * kKeys));
  for (int64_t i0 = 0; i0 < s; i0 += kQueries) {
    b.q = q + i0 * ldq;
    b.ldq = ldq;
    b.rows = std::min(kQueries, s - i0);
    b.first_slot = t0 + i0;
    b.m.assign(size_t(b.rows), kNegInf);
    b.l.assign(size_t(b.rows), 0.0f);
    b.acc.assign(size_t(b.rows * hd), 0.0f);
    const int64_t visible = b.first_slot + b.rows;  // slots the block's last query sees
    for (int64_t j0 = 0; j0 < visible; j0 += kKeys) {
      const int64_t n = std::min(kKeys, visible - j0);
      // The key block's scores column by column of contiguous runs (cache blocks), so the softmax
      // still sees kKeys keys at once whatever the cache's block size.
      for (int64_t j = j0; j < j0 + n;) {
        const int64_t m = std::min(keys.run(j), j0 + n - j);
        skinny_gemm(b.q, b.ldq, b.rows, MatrixRef{kv_dtype, keys.row(j), m, hd}, nullptr, b.scores.data() + (j - j0),
                    kKeys, 0, m, true);
        j += m;
      }
      softmax_step(b, key_mask, j0, n, hd);
      for (int64_t j = j0; j < j0 + n;) {
        const int64_t m = std::min(values.run(j), j0 + n - j);
        block_pv(b.scores.data() + (j - j0), kKeys, b.rows, values.row(j), kv_dtype, m, hd, b.acc.data());
        j += m;
      }
    }
    for (int64_t r = 0; r < b.rows; ++r) {  // normalise; no visible key (left padding): zeros
      float* o = out + (i0 + r) * ldo;
      const float inv = b.l[size_t(r)] > 0 ? 1.0f / b.l[size_t(r)] : 0.0f;
      for (int64_t j = 0; j < hd; ++j) o[j] = b.acc[size_t(r * hd + j)] * inv;
    }
  }
}

}  // namespace optforge::cpu
