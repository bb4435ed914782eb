// Which instruction sets this CPU has, asked once at run time: the binary is built for baseline
// x86-64 and picks its AVX2/F16C kernels only where the CPU it runs on supports them.
#pragma once

namespace optforge::cpu {

bool has_avx2_fma_f16c();

}  // namespace optforge::cpu
