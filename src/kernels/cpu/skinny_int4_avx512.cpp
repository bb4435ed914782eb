// The int4 streaming kernel with AVX-512 (skinny_gemm's int4 case on CPUs with AVX-512 F/BW/VL):
// a group of 32 weights becomes two 16-lane vectors, and with 32 vector registers tiles of 4
// weight rows x 4 activation rows, so each group's unpacking serves four activation rows.
#include "kernels/cpu/skinny_int4.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics trip its own -Wuninitialized once inlined (skinny_int8_avx512.cpp).
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
constexpr int64_t kGroup = 32;

// The 32 weights of a full group at p (16 bytes) times scale, in column order, into out[2].
OPTFORGE_AVX512 inline void unpack_group(const uint8_t* p, float scale, __m512 out[2]) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
  const __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
  const __m512 s = _mm512_set1_ps(scale);
  out[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight))), s);
  out[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight))), s);
}

template <int NR, int MR>
OPTFORGE_AVX512 void tile(const float* x, int64_t ldx, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                          int64_t n) {
  const int64_t K = w.cols, full = K / kGroup, G = (K + kGroup - 1) / kGroup;
  // Row and scale addresses once per tile (MatrixRef::row asks the dtype at run time).
  const uint8_t* row[NR];
  const uint16_t* sc[NR];
  for (int r = 0; r < NR; ++r) row[r] = w.row(n + r), sc[r] = w.group_scale + (n + r) * G;
  __m512 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_setzero_ps();
  for (int64_t g = 0; g < full; ++g)
    for (int r = 0; r < NR; ++r) {
      __m512 wv[2];
      unpack_group(row[r] + g * kGroup / 2, _cvtsh_ss(sc[r][g]), wv);  // F16C: exact, as f16_to_f32
      for (int m = 0; m < MR; ++m) {
        const float* xm = x + m * ldx + g * kGroup;
        acc[r][m] = _mm512_fmadd_ps(wv[0], _mm512_loadu_ps(xm), acc[r][m]);
        acc[r][m] = _mm512_fmadd_ps(wv[1], _mm512_loadu_ps(xm + 16), acc[r][m]);
      }
    }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) {
      float s = _mm512_reduce_add_ps(acc[r][m]);
      for (int64_t k = full * kGroup; k < K; ++k) s += int4_weight(row[r], sc[r], k) * x[m * ldx + k];
      y[m * ldy + n + r] = s + (bias ? bias[n + r] : 0.0f);
    }
}

template <int NR>
OPTFORGE_AVX512 void tile_all_rows(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias,
                                   float* y, int64_t ldy, int64_t n) {
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) tile<NR, 4>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  // Three left: one tile, not 2 + 1, since unpacking a group costs about as much as its FMAs.
  if (M - m == 3) return tile<NR, 3>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  if (M - m >= 2) {
    tile<NR, 2>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
    m += 2;
  }
  if (m < M) tile<NR, 1>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
}
#endif

}  // namespace

void skinny_int4_avx512(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y,
                        int64_t ldy, int64_t n0, int64_t n1) {
#if defined(__x86_64__)
  int64_t n = n0;
  // One activation row: 8 weight rows in flight keep more memory streams going (as int8's).
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
