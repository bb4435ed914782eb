// OPT's weights by role (opt/roles.h), whatever layout they came in: anything
// convert/opt_tensors.h reads (a metaseq singleton or sharded checkpoint, an HF folder or state
// dict, .pt/.bin/.safetensors, an alpa numpy folder). Tensors are views into the mmapped files in
// their stored dtype (f32, f16 or bf16; matrices of a quantized file int8 with f32 row scales); only a sharded
// checkpoint's tensors, produced while it is consolidated, are copied.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "opt/config.h"
#include "opt/roles.h"
#include "tensor/tensor.h"

namespace optforge {

// One slot per role; a role the config does not call for (biases with enable_bias false, LN
// weights without affine, project_in/out without projections, the final LN) stays empty.
using RoleTensors = std::array<std::optional<Tensor>, kRoleCount>;

struct OptWeights {
  OptConfig config;
  RoleTensors model;                // model roles (token embedding [V, Ein], positions [T + 2, E], ...)
  std::vector<RoleTensors> layers;  // layer roles, separate q/k/v, shapes as role_shape()
  // Int8 matrices' per-row f32 scales [rows], in the slot of their matrix's role (model/quantize.h);
  // empty (and layer_scales empty or all empty) when nothing is quantized.
  RoleTensors model_scales;
  std::vector<RoleTensors> layer_scales;
  std::string description;  // where the weights came from, for messages
  // The output projection is the token embedding: OPT ties them (a reader refuses anything else).
};

struct WeightLoadOptions {
  int64_t heads = 0;  // needed only when neither a metaseq cfg nor a config.json says
};

// `path`: a checkpoint file, folder or prefix.
OptWeights load_opt_weights(const std::string& path, const WeightLoadOptions& opts = {});

}  // namespace optforge
