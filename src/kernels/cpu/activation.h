// The FFN activations OPT-architecture models use, in place over n floats, computed as torch
// computes them in f32 (relu; gelu with erf, nn.functional.gelu; the tanh form of
// transformers' NewGELUActivation / metaseq's gelu_accurate).
#pragma once

#include <cstdint>

#include "opt/config.h"

namespace optforge::cpu {

void activation(float* x, int64_t n, Activation a);

}  // namespace optforge::cpu
