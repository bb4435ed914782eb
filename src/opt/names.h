// OPT's tensors by name and shape in each layout optforge reads or writes. Metaseq singleton
// order is that of metaseq's restored.pt (named_parameters of the unflattened model, qkv split
// into k, v, q in place, decoder.version last; checkpoint-formats.md section 7).
#pragma once

#include <string>
#include <vector>

#include "opt/config.h"
#include "tensor/tensor.h"

namespace optforge {

struct ParamSpec {
  std::string name;
  Shape shape;
};

std::vector<ParamSpec> metaseq_singleton_params(const OptConfig& c);

}  // namespace optforge
