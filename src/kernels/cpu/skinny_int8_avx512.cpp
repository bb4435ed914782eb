#include "kernels/cpu/skinny_int8_avx512.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the unused merge source, which its own
// -Wuninitialized flags once inlined (a known false positive): off for this file's intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // GCC only: clang has no -Wmaybe-uninitialized (and no false positive)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#define OPTFORGE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#endif

namespace optforge::cpu {
namespace {

#if defined(__x86_64__)
// NR weight rows from n against MR activation rows; k in steps of 16, the tail (K mod 16) scalar
// in the same order as the scalar kernel's per-element loop.
template <int NR, int MR>
OPTFORGE_AVX512 void tile(const float* x, int64_t ldx, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                          int64_t n) {
  const int64_t K = w.cols;
  const int8_t* row[NR];
  for (int r = 0; r < NR; ++r) row[r] = static_cast<const int8_t*>(w.data) + (n + r) * K;
  __m512 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm512_loadu_ps(x + m * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[r] + k));
      const __m512 wv = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
      for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_fmadd_ps(wv, xv[m], acc[r][m]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) {
      float s = _mm512_reduce_add_ps(acc[r][m]);
      for (int64_t kk = k; kk < K; ++kk) s += float(row[r][kk]) * x[m * ldx + kk];
      s *= w.scale[n + r];  // the row's scale, once per output
      y[m * ldy + n + r] = s + (bias ? bias[n + r] : 0.0f);
    }
}

template <int NR>
OPTFORGE_AVX512 void tile_all_rows(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias,
                                   float* y, int64_t ldy, int64_t n) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) tile<NR, 4>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  if (M - m >= 2) {
    tile<NR, 2>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
    m += 2;
  }
  if (m < M) tile<NR, 1>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
}
#endif

}  // namespace

void skinny_int8_avx512(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y,
                        int64_t ldy, int64_t n0, int64_t n1) {
#if defined(__x86_64__)
  int64_t n = n0;
  // One activation row (batch-1 decode): 8 weight rows in flight rather than 4 keeps more memory
  // streams going; bench/gemm_rows.sh: 1.3x at 1 row on the EPYC of docs/inference.md.
  if (M == 1)
    for (; n + 8 <= n1; n += 8) tile<8, 1>(x, ldx, w, bias, y, ldy, n);
  for (; n + 4 <= n1; n += 4) tile_all_rows<4>(x, ldx, M, w, bias, y, ldy, n);
  for (; n < n1; ++n) tile_all_rows<1>(x, ldx, M, w, bias, y, ldy, n);
#else
  (void)x, (void)ldx, (void)M, (void)w, (void)bias, (void)y, (void)ldy, (void)n0, (void)n1;
#endif
}

}  // namespace optforge::cpu

#if defined(__x86_64__)
#pragma GCC diagnostic pop
#endif
