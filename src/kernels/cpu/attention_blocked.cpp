// Prefill attention in blocks (flash-attention's order): a block of queries meets the cache a
// block of keys at a time, with a running max and sum per query (online softmax), so each key and
// value row is converted from the cache's dtype once per query block and stays in L1 while the
// block's queries use it, instead of every query streaming the whole cache. The two products per
// block are register-tiled (attention_tiles.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_tiles.h"
#include "tensor/convert.h"

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

// Rows [j0, j0 + n) of a cache matrix as f32: a view for f32, else converted into buf.
const float* key_rows(const void* m, DType dt, int64_t j0, int64_t n, int64_t hd, std::vector<float>& buf) {
  const auto* base = static_cast<const uint8_t*>(m) + j0 * hd * int64_t(dtype_size(dt));
  if (dt == DType::F32) return reinterpret_cast<const float*>(base);
  buf.resize(size_t(n * hd));
  convert_elements(dt, base, DType::F32, reinterpret_cast<uint8_t*>(buf.data()), uint64_t(n * hd));
  return buf.data();
}

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

void attend_head_blocked(const float* q, int64_t ldq, int64_t s, const void* keys, const void* values, DType kv_dtype,
                         const uint8_t* key_mask, int64_t t0, int64_t hd, float* out, int64_t ldo) {
  QueryBlock b;
  std::vector<float> kbuf, vbuf;
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
      const float* K = key_rows(keys, kv_dtype, j0, n, hd, kbuf);
      const float* V = key_rows(values, kv_dtype, j0, n, hd, vbuf);
      block_scores(b.q, b.ldq, b.rows, K, n, hd, b.scores.data(), kKeys);
      softmax_step(b, key_mask, j0, n, hd);
      block_pv(b.scores.data(), kKeys, b.rows, V, n, hd, b.acc.data());
    }
    for (int64_t r = 0; r < b.rows; ++r) {  // normalise; no visible key (left padding): zeros
      float* o = out + (i0 + r) * ldo;
      const float inv = b.l[size_t(r)] > 0 ? 1.0f / b.l[size_t(r)] : 0.0f;
      for (int64_t j = 0; j < hd; ++j) o[j] = b.acc[size_t(r * hd + j)] * inv;
    }
  }
}

}  // namespace optforge::cpu
