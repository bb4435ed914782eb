#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/threads.h"

namespace optforge::cpu {
namespace {

template <DType D>
void load_row_t(const void* src, int64_t n, float* dst) {
  int64_t k = 0;
#if OPTFORGE_HAVE_X86
  if constexpr (D != DType::F32) {
    if (has_avx2_fma_f16c()) {
      // A lambda cannot carry the target attribute portably; a local struct's static can.
      struct V {
        OPTFORGE_AVX2 static int64_t run(const void* s, int64_t len, float* d) {
          int64_t i = 0;
          for (; i + 8 <= len; i += 8) _mm256_storeu_ps(d + i, load8<D>(s, i));
          return i;
        }
      };
      k = V::run(src, n, dst);
    }
  }
#endif
  for (; k < n; ++k) dst[k] = load1<D>(src, k);
}

// Rows the BLAS path converts per block: about 16 MiB of f32, so the block stays cache-friendly
// for OpenBLAS's packing and the buffer stays small whatever the matrix.
int64_t block_rows(int64_t K) { return std::max<int64_t>(64, (int64_t(4) << 20) / std::max<int64_t>(1, K)); }

}  // namespace

void load_row(const MatrixRef& m, int64_t r, float* dst) {
  switch (m.dtype) {
    case DType::F32: std::memcpy(dst, m.row(r), size_t(m.cols) * 4); return;
    case DType::F16: return load_row_t<DType::F16>(m.row(r), m.cols, dst);
    default: return load_row_t<DType::BF16>(m.row(r), m.cols, dst);
  }
}

void linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y) {
  const int64_t N = w.rows, K = w.cols;
  if (M <= 0 || N <= 0) return;
  if (M <= kSkinnyMaxRows) {
    // Split W's rows over threads; each chunk is whole 4-row tiles so no tile is split.
    const int64_t tiles = (N + 3) / 4;
    parallel_for(tiles, 8, [&](int64_t t0, int64_t t1) {
      skinny_gemm(x, M, w, bias, y, N, t0 * 4, std::min(N, t1 * 4), true);
    });
    return;
  }
  // The bias first, then sgemm with beta = 1 adds x·Wᵀ onto it (as torch's addmm does).
  for (int64_t m = 0; m < M; ++m) {
    if (bias) std::memcpy(y + m * N, bias, size_t(N) * 4);
    else std::memset(y + m * N, 0, size_t(N) * 4);
  }
  if (w.dtype == DType::F32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, x, int(K),
                static_cast<const float*>(w.data), int(K), 1.0f, y, int(N));
    return;
  }
  thread_local std::vector<float> buf;
  const int64_t rows = std::min(N, block_rows(K));
  buf.resize(size_t(rows * K));
  float* block = buf.data();  // buf is thread_local: the workers must see the caller's
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t nb = std::min(rows, N - n0);
    parallel_for(nb, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) load_row(w, n0 + r, block + r * K);
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(nb), int(K), 1.0f, x, int(K), block,
                int(K), 1.0f, y + n0, int(N));
  }
}

}  // namespace optforge::cpu
