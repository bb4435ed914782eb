// Int4 decode kernel. Each group of 32 weights is 16 bytes: unpacked to 32 bytes in column order
// (low nibble = even column), widened to int32, converted, and multiplied by the group's scale
// once (so every activation row then reuses dequantized f32 weights, as the other dtypes do).
#include "kernels/cpu/skinny_int4.h"

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"

namespace optforge::cpu {
namespace {

constexpr int64_t kGroup = 32;

const uint16_t* scales_of(const MatrixRef& w, int64_t r) {
  return w.group_scale + r * ((w.cols + kGroup - 1) / kGroup);
}

void rows_scalar(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.row(n);
    const uint16_t* sc = scales_of(w, n);
    for (int64_t m = 0; m < M; ++m) {
      float s = 0;
      for (int64_t k = 0; k < w.cols; ++k) s += int4_weight(row, sc, k) * x[m * ldx + k];
      y[m * ldy + n] = s + (bias ? bias[n] : 0.0f);
    }
  }
}

#if OPTFORGE_HAVE_X86
// The 32 weights of a full group at p (16 bytes) times scale, in column order, into out[4].
OPTFORGE_AVX2 inline void unpack_group(const uint8_t* p, float scale, __m256 out[4]) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
  const __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
  // Interleaving low and high nibbles restores column order; minus 8 gives q in [-8, 7].
  const __m128i c0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight);  // columns 0..15
  const __m128i c1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight);  // columns 16..31
  const __m256 s = _mm256_set1_ps(scale);
  out[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c0)), s);
  out[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c0, 8))), s);
  out[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c1)), s);
  out[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c1, 8))), s);
}

// NR weight rows from n against MR activation rows: one group of a row is unpacked at a time and
// used against every activation row (x re-read from L1, the weights from memory once).
template <int NR, int MR>
OPTFORGE_AVX2 void tile(const float* x, int64_t ldx, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                        int64_t n) {
  const int64_t K = w.cols, full = K / kGroup;
  // Row and scale addresses once per tile (MatrixRef::row asks the dtype at run time).
  const uint8_t* row[NR];
  const uint16_t* sc[NR];
  for (int r = 0; r < NR; ++r) row[r] = w.row(n + r), sc[r] = scales_of(w, n + r);
  __m256 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm256_setzero_ps();
  for (int64_t g = 0; g < full; ++g)
    for (int r = 0; r < NR; ++r) {
      __m256 wv[4];
      unpack_group(row[r] + g * kGroup / 2, _cvtsh_ss(sc[r][g]), wv);  // F16C: exact, as f16_to_f32
      for (int m = 0; m < MR; ++m) {
        const float* xm = x + m * ldx + g * kGroup;
        for (int c = 0; c < 4; ++c) acc[r][m] = _mm256_fmadd_ps(wv[c], _mm256_loadu_ps(xm + 8 * c), acc[r][m]);
      }
    }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) {
      float s = hsum(acc[r][m]);
      for (int64_t k = full * kGroup; k < K; ++k)
        s += int4_weight(row[r], sc[r], k) * x[m * ldx + k];  // the short group
      y[m * ldy + n + r] = s + (bias ? bias[n + r] : 0.0f);
    }
}

// Unpacking a group costs about as much as a few FMAs, so past two activation rows the tiles
// trade weight rows for activation rows: 2 x 4 serves four rows per unpacking (13 of AVX2's 16
// registers: 8 accumulators, 4 weight vectors, an activation vector).
template <int NR>
OPTFORGE_AVX2 void tile_all_rows(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias,
                                 float* y, int64_t ldy, int64_t n) {
  int64_t m = 0;
  if (M > 2)
    for (; m + 4 <= M; m += 4) tile<NR, 4>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  if (M - m == 3) return tile<NR, 3>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  for (; m + 2 <= M; m += 2) tile<NR, 2>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  if (m < M) tile<NR, 1>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
}

OPTFORGE_AVX2 void rows_avx2(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y,
                             int64_t ldy, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (M <= 2)  // few activation rows: 4 weight rows in flight
    for (; n + 4 <= n1; n += 4) tile_all_rows<4>(x, ldx, M, w, bias, y, ldy, n);
  for (; n + 2 <= n1; n += 2) tile_all_rows<2>(x, ldx, M, w, bias, y, ldy, n);
  for (; n < n1; ++n) tile_all_rows<1>(x, ldx, M, w, bias, y, ldy, n);
}

OPTFORGE_AVX2 int64_t load_full_groups(const uint8_t* row, const uint16_t* sc, int64_t K, float* dst) {
  const int64_t full = K / kGroup;
  for (int64_t g = 0; g < full; ++g) {
    __m256 wv[4];
    unpack_group(row + g * kGroup / 2, _cvtsh_ss(sc[g]), wv);
    for (int c = 0; c < 4; ++c) _mm256_storeu_ps(dst + g * kGroup + 8 * c, wv[c]);
  }
  return full * kGroup;
}
#endif

}  // namespace

void skinny_int4(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1, bool simd) {
#if OPTFORGE_HAVE_X86
  if (simd) return rows_avx2(x, ldx, M, w, bias, y, ldy, n0, n1);
#endif
  (void)simd;
  rows_scalar(x, ldx, M, w, bias, y, ldy, n0, n1);
}

void load_row_int4(const MatrixRef& m, int64_t r, float* dst) {
  const uint8_t* row = m.row(r);
  const uint16_t* sc = scales_of(m, r);
  int64_t k = 0;
#if OPTFORGE_HAVE_X86
  if (has_avx2_fma_f16c()) k = load_full_groups(row, sc, m.cols, dst);
#endif
  for (; k < m.cols; ++k) dst[k] = int4_weight(row, sc, k);
}

}  // namespace optforge::cpu
