// Register tiles: 4 output rows x 16 columns stay in registers across a key block, so each V
// chunk is loaded (and converted from the cache's dtype) once per 4 queries.
#include "kernels/cpu/attention_tiles.h"

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/vec.h"

namespace optforge::cpu {
namespace {

#if OPTFORGE_HAVE_X86
// Columns [j, j + 8C) of R output rows, over all n keys.
template <DType D, int R, int C>
OPTFORGE_AVX2 void pv_tile(const float* p, int64_t ldp, const void* v, int64_t n, int64_t hd, int64_t j, float* acc) {
  __m256 a[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) a[r][c] = _mm256_loadu_ps(acc + r * hd + j + 8 * c);
  for (int64_t t = 0; t < n; ++t) {
    __m256 vv[C];
    for (int c = 0; c < C; ++c) vv[c] = load8<D>(v, t * hd + j + 8 * c);
    for (int r = 0; r < R; ++r) {
      const __m256 pr = _mm256_broadcast_ss(p + r * ldp + t);
      for (int c = 0; c < C; ++c) a[r][c] = _mm256_fmadd_ps(pr, vv[c], a[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(acc + r * hd + j + 8 * c, a[r][c]);
}

template <DType D, int R>
OPTFORGE_AVX2 void pv_rows(const float* p, int64_t ldp, const void* v, int64_t n, int64_t hd, float* acc) {
  int64_t j = 0;
  for (; j + 16 <= hd; j += 16) pv_tile<D, R, 2>(p, ldp, v, n, hd, j, acc);
  if (j + 8 <= hd) {
    pv_tile<D, R, 1>(p, ldp, v, n, hd, j, acc);
    j += 8;
  }
  for (; j < hd; ++j)  // the columns past the last multiple of 8
    for (int r = 0; r < R; ++r) {
      float s = acc[r * hd + j];
      for (int64_t t = 0; t < n; ++t) s += p[r * ldp + t] * load1<D>(v, t * hd + j);
      acc[r * hd + j] = s;
    }
}

template <DType D>
OPTFORGE_AVX2 void block_pv_avx2(const float* p, int64_t ldp, int64_t rows, const void* v, int64_t n, int64_t hd,
                                 float* acc) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) pv_rows<D, 4>(p + r * ldp, ldp, v, n, hd, acc + r * hd);
  for (; r < rows; ++r) pv_rows<D, 1>(p + r * ldp, ldp, v, n, hd, acc + r * hd);
}
#endif

}  // namespace

void block_pv(const float* p, int64_t ldp, int64_t rows, const void* v, DType v_dtype, int64_t n, int64_t hd,
              float* acc) {
#if OPTFORGE_HAVE_X86
  if (has_avx2_fma_f16c()) {
    switch (v_dtype) {
      case DType::F32: return block_pv_avx2<DType::F32>(p, ldp, rows, v, n, hd, acc);
      case DType::F16: return block_pv_avx2<DType::F16>(p, ldp, rows, v, n, hd, acc);
      default: return block_pv_avx2<DType::BF16>(p, ldp, rows, v, n, hd, acc);
    }
  }
#endif
  const int64_t row_bytes = hd * int64_t(dtype_size(v_dtype));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < n; ++t)
      axpy(p[r * ldp + t], static_cast<const uint8_t*>(v) + t * row_bytes, v_dtype, acc + r * hd, hd);
}

}  // namespace optforge::cpu
