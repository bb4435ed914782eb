// AVX2/F16C building blocks shared by the kernels. Every function that uses them carries
// OPTFORGE_AVX2 so the rest of the binary stays baseline x86-64; callers check
// has_avx2_fma_f16c() at run time before entering such a function.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define OPTFORGE_HAVE_X86 1
#define OPTFORGE_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define OPTFORGE_HAVE_X86 0
#endif

namespace optforge::cpu {

// Element i of a row stored as D, as f32 (the scalar path and the tails of the SIMD loops).
template <DType D>
inline float load1(const void* p, int64_t i) {
  if constexpr (D == DType::F32)
    return static_cast<const float*>(p)[i];
  else if constexpr (D == DType::I8)
    return float(static_cast<const int8_t*>(p)[i]);  // the integer; the row's scale is applied by the caller
  else if constexpr (D == DType::F16)
    return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  else
    return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

#if OPTFORGE_HAVE_X86
// Eight elements from i on, converted to f32 in registers: f16 through F16C's vcvtph2ps; bf16 is
// the top half of an f32, so widening and shifting left by 16 is exact; int8 is sign-extended to
// int32 and converted (exact: |q| <= 127), without its row's scale.
template <DType D>
OPTFORGE_AVX2 inline __m256 load8(const void* p, int64_t i) {
  if constexpr (D == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (D == DType::I8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(p) + i));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    if constexpr (D == DType::F16)
      return _mm256_cvtph_ps(h);
    else
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

OPTFORGE_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace optforge::cpu
