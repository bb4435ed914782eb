// Register tiles: 4 queries x 2 keys of dot products share each loaded chunk (6 loads per 8 FMAs
// instead of 2 per FMA), and 4 output rows x 16 columns stay in registers across a key block.
#include "kernels/cpu/attention_tiles.h"

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/vec.h"

namespace optforge::cpu {
namespace {

#if OPTFORGE_HAVE_X86
template <int R, int T>
OPTFORGE_AVX2 void scores_tile(const float* q, int64_t ldq, const float* k, int64_t hd, float* s, int64_t lds) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= hd; j += 8) {
    __m256 kv[T];
    for (int t = 0; t < T; ++t) kv[t] = _mm256_loadu_ps(k + t * hd + j);
    for (int r = 0; r < R; ++r) {
      const __m256 qv = _mm256_loadu_ps(q + r * ldq + j);
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(qv, kv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float v = hsum(acc[r][t]);
      for (int64_t jj = j; jj < hd; ++jj) v += q[r * ldq + jj] * k[t * hd + jj];
      s[r * lds + t] = v;
    }
}

template <int R>
OPTFORGE_AVX2 void scores_rows(const float* q, int64_t ldq, const float* k, int64_t n, int64_t hd, float* s,
                               int64_t lds) {
  int64_t t = 0;
  for (; t + 2 <= n; t += 2) scores_tile<R, 2>(q, ldq, k + t * hd, hd, s + t, lds);
  if (t < n) scores_tile<R, 1>(q, ldq, k + t * hd, hd, s + t, lds);
}

OPTFORGE_AVX2 void block_scores_avx2(const float* q, int64_t ldq, int64_t rows, const float* k, int64_t n, int64_t hd,
                                     float* s, int64_t lds) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) scores_rows<4>(q + r * ldq, ldq, k, n, hd, s + r * lds, lds);
  for (; r < rows; ++r) scores_rows<1>(q + r * ldq, ldq, k, n, hd, s + r * lds, lds);
}

// Columns [j, j + 8C) of R output rows, over all n keys.
template <int R, int C>
OPTFORGE_AVX2 void pv_tile(const float* p, int64_t ldp, const float* v, int64_t n, int64_t hd, int64_t j, float* acc) {
  __m256 a[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) a[r][c] = _mm256_loadu_ps(acc + r * hd + j + 8 * c);
  for (int64_t t = 0; t < n; ++t) {
    __m256 vv[C];
    for (int c = 0; c < C; ++c) vv[c] = _mm256_loadu_ps(v + t * hd + j + 8 * c);
    for (int r = 0; r < R; ++r) {
      const __m256 pr = _mm256_broadcast_ss(p + r * ldp + t);
      for (int c = 0; c < C; ++c) a[r][c] = _mm256_fmadd_ps(pr, vv[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(acc + r * hd + j + 8 * c, a[r][c]);
}

template <int R>
OPTFORGE_AVX2 void pv_rows(const float* p, int64_t ldp, const float* v, int64_t n, int64_t hd, float* acc) {
  int64_t j = 0;
  for (; j + 16 <= hd; j += 16) pv_tile<R, 2>(p, ldp, v, n, hd, j, acc);
  if (j + 8 <= hd) {
    pv_tile<R, 1>(p, ldp, v, n, hd, j, acc);
    j += 8;
  }
  for (; j < hd; ++j)  // the columns past the last multiple of 8
    for (int r = 0; r < R; ++r) {
      float s = acc[r * hd + j];
      for (int64_t t = 0; t < n; ++t) s += p[r * ldp + t] * v[t * hd + j];
      acc[r * hd + j] = s;
    }
}

OPTFORGE_AVX2 void block_pv_avx2(const float* p, int64_t ldp, int64_t rows, const float* v, int64_t n, int64_t hd,
                                 float* acc) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) pv_rows<4>(p + r * ldp, ldp, v, n, hd, acc + r * hd);
  for (; r < rows; ++r) pv_rows<1>(p + r * ldp, ldp, v, n, hd, acc + r * hd);
}
#endif

}  // namespace

void block_scores(const float* q, int64_t ldq, int64_t rows, const float* k, int64_t n, int64_t hd, float* s,
                  int64_t lds) {
#if OPTFORGE_HAVE_X86
  if (has_avx2_fma_f16c()) return block_scores_avx2(q, ldq, rows, k, n, hd, s, lds);
#endif
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < n; ++t) s[r * lds + t] = dot(q + r * ldq, k + t * hd, hd);
}

void block_pv(const float* p, int64_t ldp, int64_t rows, const float* v, int64_t n, int64_t hd, float* acc) {
#if OPTFORGE_HAVE_X86
  if (has_avx2_fma_f16c()) return block_pv_avx2(p, ldp, rows, v, n, hd, acc);
#endif
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < n; ++t) axpy(p[r * ldp + t], v + t * hd, acc + r * hd, hd);
}

}  // namespace optforge::cpu
