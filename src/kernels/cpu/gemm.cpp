#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/onednn_gemm.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/skinny_int4.h"
#include "kernels/cpu/threads.h"

namespace optforge::cpu {
namespace {

// scale: I8 rows only (1 otherwise, and unused): each element is q * scale, one f32 product.
template <DType D>
void load_row_t(const void* src, int64_t n, float* dst, float scale = 1.0f) {
  int64_t k = 0;
#if OPTFORGE_HAVE_X86
  if constexpr (D != DType::F32) {
    if (has_avx2_fma_f16c()) {
      // A lambda cannot carry the target attribute portably; a local struct's static can.
      struct V {
        OPTFORGE_AVX2 static int64_t run(const void* s, int64_t len, float* d, float sc) {
          int64_t i = 0;
          if constexpr (D == DType::I8) {
            const __m256 sv = _mm256_set1_ps(sc);
            for (; i + 8 <= len; i += 8) _mm256_storeu_ps(d + i, _mm256_mul_ps(load8<D>(s, i), sv));
          } else {
            for (; i + 8 <= len; i += 8) _mm256_storeu_ps(d + i, load8<D>(s, i));
          }
          return i;
        }
      };
      k = V::run(src, n, dst, scale);
    }
  }
#endif
  for (; k < n; ++k) dst[k] = D == DType::I8 ? load1<D>(src, k) * scale : load1<D>(src, k);
}

}  // namespace

void load_row(const MatrixRef& m, int64_t r, float* dst) {
  switch (m.dtype) {
    case DType::F32: std::memcpy(dst, m.row(r), size_t(m.cols) * 4); return;
    case DType::F16: return load_row_t<DType::F16>(m.row(r), m.cols, dst);
    case DType::I8: return load_row_t<DType::I8>(m.row(r), m.cols, dst, m.scale[r]);
    case DType::U8: return load_row_int4(m, r, dst);
    default: return load_row_t<DType::BF16>(m.row(r), m.cols, dst);
  }
}

int64_t streaming_rows_here(DType dt) {
  if (has_avx512() && (dt == DType::I8 || dt == DType::U8))
    return dt == DType::I8 ? kInt8Avx512StreamingRows : kInt4Avx512StreamingRows;
  return streaming_rows(dt);
}

void linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y) {
  const int64_t N = w.rows;
  if (M <= 0 || N <= 0) return;
  if (M <= streaming_rows_here(w.dtype)) {
    // Split W's rows over threads; each chunk is whole 4-row tiles so no tile is split.
    const int64_t tiles = (N + 3) / 4;
    parallel_for(tiles, 8, [&](int64_t t0, int64_t t1) {
      skinny_gemm(x, w.cols, M, w, bias, y, N, t0 * 4, std::min(N, t1 * 4), true);
    });
    return;
  }
  onednn_linear(x, M, w, bias, y);
}

}  // namespace optforge::cpu
