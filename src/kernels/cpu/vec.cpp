#include "kernels/cpu/vec.h"

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"

namespace optforge::cpu {
namespace {

#if OPTFORGE_HAVE_X86
template <DType D>
OPTFORGE_AVX2 float dot_avx2(const float* a, const void* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8<D>(b, i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8<D>(b, i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8<D>(b, i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * load1<D>(b, i);
  return s;
}

template <DType D>
OPTFORGE_AVX2 void axpy_avx2(float a, const void* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8<D>(x, i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * load1<D>(x, i);
}
#endif

template <DType D>
float dot_t(const float* a, const void* b, int64_t n) {
#if OPTFORGE_HAVE_X86
  if (has_avx2_fma_f16c()) return dot_avx2<D>(a, b, n);
#endif
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * load1<D>(b, i);
  return s;
}

template <DType D>
void axpy_t(float a, const void* x, float* y, int64_t n) {
#if OPTFORGE_HAVE_X86
  if (has_avx2_fma_f16c()) return axpy_avx2<D>(a, x, y, n);
#endif
  for (int64_t i = 0; i < n; ++i) y[i] += a * load1<D>(x, i);
}

}  // namespace

float dot(const float* a, const void* b, DType bt, int64_t n) {
  switch (bt) {
    case DType::F32: return dot_t<DType::F32>(a, b, n);
    case DType::F16: return dot_t<DType::F16>(a, b, n);
    default: return dot_t<DType::BF16>(a, b, n);
  }
}

void axpy(float a, const void* x, DType xt, float* y, int64_t n) {
  switch (xt) {
    case DType::F32: return axpy_t<DType::F32>(a, x, y, n);
    case DType::F16: return axpy_t<DType::F16>(a, x, y, n);
    default: return axpy_t<DType::BF16>(a, x, y, n);
  }
}

}  // namespace optforge::cpu
