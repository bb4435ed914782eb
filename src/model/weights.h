// OPT's weights bound by name, whatever layout they came in: anything convert/opt_tensors.h reads
// (a metaseq singleton or sharded checkpoint, an HF folder or state dict, .pt/.bin/.safetensors,
// an alpa numpy folder). Tensors are views into the mmapped files in their stored dtype (f32, f16
// or bf16); only a sharded checkpoint's tensors, produced while it is consolidated, are copied.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "opt/config.h"
#include "tensor/tensor.h"

namespace optforge {

struct OptLayerWeights {
  Tensor q_proj_w, q_proj_b, k_proj_w, k_proj_b, v_proj_w, v_proj_b, out_proj_w, out_proj_b;
  Tensor self_attn_layer_norm_w, self_attn_layer_norm_b;
  Tensor fc1_w, fc1_b, fc2_w, fc2_b;
  Tensor final_layer_norm_w, final_layer_norm_b;  // the layer's FFN norm (HF's name)
};

struct OptWeights {
  OptConfig config;
  Tensor embed_tokens;     // [V, Ein]
  Tensor embed_positions;  // [T + 2, E]
  std::optional<Tensor> project_in, project_out;              // 350m: [E, Ein], [Ein, E]
  std::optional<Tensor> final_layer_norm_w, final_layer_norm_b;  // pre-LN models only
  Tensor lm_head;          // [V, Ein]: embed_tokens itself unless the checkpoint unties it
  std::vector<OptLayerWeights> layers;
  std::string description;  // where the weights came from, for messages
};

struct WeightLoadOptions {
  int64_t heads = 0;  // needed only when neither a metaseq cfg nor a config.json says
};

// `path`: a checkpoint file, folder or prefix.
OptWeights load_opt_weights(const std::string& path, const WeightLoadOptions& opts = {});

}  // namespace optforge
