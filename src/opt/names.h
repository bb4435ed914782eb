// OPT's tensors by name and shape in each layout optforge reads or writes. Metaseq singleton
// order is that of metaseq's restored.pt (named_parameters of the unflattened model, qkv split
// into k, v, q in place, decoder.version last; docs/spec-checkpoints.md §restored.pt order).
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

// Name mappings between layouts (docs/spec-checkpoints.md §Hugging Face layout, §alpa layouts).
// Canonical names are metaseq singleton names. Each returns "" for a name with no counterpart.
std::string hf_name(const std::string& metaseq);            // "model.decoder...."
std::string metaseq_name_from_hf(const std::string& hf);    // accepts with or without "model."
std::string alpa_file_name(const std::string& metaseq);     // alpa's np folder file name
std::string metaseq_name_from_alpa(const std::string& alpa);

}  // namespace optforge
