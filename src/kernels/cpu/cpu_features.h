// Which instruction sets this CPU has, asked once at run time: the binary is built for baseline
// x86-64 and picks its AVX2/F16C kernels only where the CPU it runs on supports them.
#pragma once

namespace optforge::cpu {

bool has_avx2_fma_f16c();
// AVX-512 F, BW and VL with the OS saving the ZMM and mask registers (and AVX2/FMA/F16C, so
// callers may fall back to those kernels). OPTFORGE_NO_AVX512=1 (or OPTFORGE_NO_SIMD=1) says no.
bool has_avx512();

}  // namespace optforge::cpu
