// The decode-time matrix product: a few activation rows against a weight matrix that is read
// once from memory. This is memory-bound, so the work is arranged to stream W exactly once:
// a tile of 4 weight rows is converted in registers and used against every activation row
// (pairs of rows at a time) while it is still in L1. Prefill attention uses the same kernel for
// its scores Q·Kᵀ, with the key block as W (attention_blocked.cpp).
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/skinny_int4.h"
#include "kernels/cpu/skinny_int8_avx512.h"

namespace optforge::cpu {
namespace {

template <DType D>
void rows_scalar(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1) {
  const int64_t K = w.cols;
  for (int64_t n = n0; n < n1; ++n) {
    const void* row = w.row(n);
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * ldx;
      float s = 0;
      for (int64_t k = 0; k < K; ++k) s += load1<D>(row, k) * xm[k];
      if constexpr (D == DType::I8) s *= w.scale[n];  // W[n, k] = q[n, k] * scale[n]
      y[m * ldy + n] = s + (bias ? bias[n] : 0.0f);
    }
  }
}

#if OPTFORGE_HAVE_X86
// NR weight rows from n against MR activation rows: NR*MR accumulators of 8 lanes each.
template <DType D, int NR, int MR>
OPTFORGE_AVX2 void tile_avx2(const float* x, int64_t ldx, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                             int64_t n) {
  const int64_t K = w.cols;
  // Row addresses with the element size known here (MatrixRef::row asks dtype_size at run time,
  // a call per row that shows when K is short, as for attention's scores).
  constexpr int64_t kElem = D == DType::F32 ? 4 : D == DType::I8 ? 1 : 2;
  const void* row[NR];
  for (int r = 0; r < NR; ++r) row[r] = static_cast<const uint8_t*>(w.data) + (n + r) * K * kElem;
  __m256 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 xv[MR];
    for (int m = 0; m < MR; ++m) xv[m] = _mm256_loadu_ps(x + m * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = load8<D>(row[r], k);
      for (int m = 0; m < MR; ++m) acc[r][m] = _mm256_fmadd_ps(wv, xv[m], acc[r][m]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int m = 0; m < MR; ++m) {
      float s = hsum(acc[r][m]);
      for (int64_t kk = k; kk < K; ++kk) s += load1<D>(row[r], kk) * x[m * ldx + kk];
      if constexpr (D == DType::I8) s *= w.scale[n + r];  // the row's scale, once per output
      y[m * ldy + n + r] = s + (bias ? bias[n + r] : 0.0f);
    }
}

template <DType D, int NR>
OPTFORGE_AVX2 void tile_all_rows(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias,
                                 float* y, int64_t ldy, int64_t n) {
  int64_t m = 0;
  for (; m + 2 <= M; m += 2) tile_avx2<D, NR, 2>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
  if (m < M) tile_avx2<D, NR, 1>(x + m * ldx, ldx, w, bias, y + m * ldy, ldy, n);
}

template <DType D>
OPTFORGE_AVX2 void rows_avx2(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y,
                             int64_t ldy, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) tile_all_rows<D, 4>(x, ldx, M, w, bias, y, ldy, n);
  for (; n < n1; ++n) tile_all_rows<D, 1>(x, ldx, M, w, bias, y, ldy, n);
}
#endif

template <DType D>
void rows(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
          int64_t n0, int64_t n1, bool simd) {
#if OPTFORGE_HAVE_X86
  if (simd) return rows_avx2<D>(x, ldx, M, w, bias, y, ldy, n0, n1);
#endif
  (void)simd;
  rows_scalar<D>(x, ldx, M, w, bias, y, ldy, n0, n1);
}

}  // namespace

void skinny_gemm(const float* x, int64_t ldx, int64_t M, const MatrixRef& w, const float* bias, float* y, int64_t ldy,
                 int64_t n0, int64_t n1, bool simd, bool avx512) {
  simd = simd && has_avx2_fma_f16c();
  if (simd && avx512 && w.dtype == DType::I8 && has_avx512())
    return skinny_int8_avx512(x, ldx, M, w, bias, y, ldy, n0, n1);
  if (simd && avx512 && w.dtype == DType::U8 && has_avx512())
    return skinny_int4_avx512(x, ldx, M, w, bias, y, ldy, n0, n1);
  if (w.dtype == DType::U8) return skinny_int4(x, ldx, M, w, bias, y, ldy, n0, n1, simd);
  switch (w.dtype) {
    case DType::F32: return rows<DType::F32>(x, ldx, M, w, bias, y, ldy, n0, n1, simd);
    case DType::F16: return rows<DType::F16>(x, ldx, M, w, bias, y, ldy, n0, n1, simd);
    case DType::I8: return rows<DType::I8>(x, ldx, M, w, bias, y, ldy, n0, n1, simd);
    default: return rows<DType::BF16>(x, ldx, M, w, bias, y, ldy, n0, n1, simd);
  }
}

}  // namespace optforge::cpu
