#include "kernels/cpu/cpu_features.h"

#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace optforge::cpu {

bool has_avx2_fma_f16c() {
  // OPTFORGE_NO_SIMD=1 forces the scalar kernels (tests compare the two paths).
  static const bool yes = [] {
    const char* off = std::getenv("OPTFORGE_NO_SIMD");
    if (off && *off && *off != '0') return false;
#if defined(__x86_64__)
    // cpuid directly: clang's __builtin_cpu_supports does not know "f16c".
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), f16c = c & (1u << 29);
    if (!fma || !osxsave || !f16c) return false;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return false;  // the OS saves the YMM registers
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return (b & (1u << 5)) != 0;  // AVX2
#else
    return false;
#endif
  }();
  return yes;
}

bool has_avx512() {
  static const bool yes = [] {
    const char* off = std::getenv("OPTFORGE_NO_AVX512");
    if ((off && *off && *off != '0') || !has_avx2_fma_f16c()) return false;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31);
    if (!f || !bw || !vl) return false;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6) == 0xe6;  // YMM plus the opmask and both halves of the ZMM state
#else
    return false;
#endif
  }();
  return yes;
}

}  // namespace optforge::cpu
