#include "opt/names.h"

namespace optforge {

std::vector<ParamSpec> metaseq_singleton_params(const OptConfig& c) {
  const int64_t E = c.embed_dim, F = c.ffn_dim, Ein = c.input_dim;
  std::vector<ParamSpec> p;
  p.push_back({"decoder.embed_tokens.weight", {c.vocab, Ein}});
  if (c.has_projections()) p.push_back({"decoder.project_in_dim.weight", {E, Ein}});
  p.push_back({"decoder.embed_positions.weight", {c.max_positions + 2, E}});
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string pre = "decoder.layers." + std::to_string(l) + ".";
    for (const char* w : {"k", "v", "q"}) p.push_back({pre + "self_attn." + w + "_proj.weight", {E, E}});
    for (const char* w : {"k", "v", "q"}) p.push_back({pre + "self_attn." + w + "_proj.bias", {E}});
    p.push_back({pre + "self_attn.out_proj.weight", {E, E}});
    p.push_back({pre + "self_attn.out_proj.bias", {E}});
    p.push_back({pre + "self_attn_layer_norm.weight", {E}});
    p.push_back({pre + "self_attn_layer_norm.bias", {E}});
    p.push_back({pre + "fc1.weight", {F, E}});
    p.push_back({pre + "fc1.bias", {F}});
    p.push_back({pre + "fc2.weight", {E, F}});
    p.push_back({pre + "fc2.bias", {E}});
    p.push_back({pre + "final_layer_norm.weight", {E}});
    p.push_back({pre + "final_layer_norm.bias", {E}});
  }
  if (c.pre_ln) {
    p.push_back({"decoder.layer_norm.weight", {E}});
    p.push_back({"decoder.layer_norm.bias", {E}});
  }
  if (c.has_projections()) p.push_back({"decoder.project_out_dim.weight", {Ein, E}});
  return p;
}

}  // namespace optforge
