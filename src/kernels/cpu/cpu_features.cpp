#include "kernels/cpu/cpu_features.h"

#include <cstdlib>

namespace optforge::cpu {

bool has_avx2_fma_f16c() {
  // OPTFORGE_NO_SIMD=1 forces the scalar kernels (tests compare the two paths).
  static const bool yes = [] {
    const char* off = std::getenv("OPTFORGE_NO_SIMD");
    if (off && *off && *off != '0') return false;
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
  }();
  return yes;
}

}  // namespace optforge::cpu
