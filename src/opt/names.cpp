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

namespace optforge {

namespace {
bool starts(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Whole-name renames between metaseq and HF (without the "model." prefix); layer names agree.
const std::pair<const char*, const char*> kRenames[] = {
    {"decoder.project_in_dim.weight", "decoder.project_in.weight"},
    {"decoder.project_out_dim.weight", "decoder.project_out.weight"},
    {"decoder.layer_norm.weight", "decoder.final_layer_norm.weight"},
    {"decoder.layer_norm.bias", "decoder.final_layer_norm.bias"},
};
}  // namespace

std::string hf_name(const std::string& m) {
  if (m == "decoder.version" || m == "decoder.output_projection.weight") return "";
  for (const auto& [ms, hf] : kRenames)
    if (m == ms) return std::string("model.") + hf;
  if (!starts(m, "decoder.")) return "";
  return "model." + m;
}

std::string metaseq_name_from_hf(const std::string& h) {
  if (h == "lm_head.weight") return "";
  std::string n = starts(h, "model.") ? h.substr(6) : h;
  for (const auto& [ms, hf] : kRenames)
    if (n == hf) return ms;
  if (!starts(n, "decoder.")) return "";
  return n;
}

std::string alpa_file_name(const std::string& m) {
  // alpa's download path takes HF's names and renames final_layer_norm back to layer_norm, so
  // its files carry metaseq names except project_in/project_out (350m only).
  if (m == "decoder.project_in_dim.weight") return "decoder.project_in.weight";
  if (m == "decoder.project_out_dim.weight") return "decoder.project_out.weight";
  if (m == "decoder.version" || m == "decoder.output_projection.weight") return "";
  return m;
}

std::string metaseq_name_from_alpa(const std::string& a) {
  if (a == "decoder.project_in.weight") return "decoder.project_in_dim.weight";
  if (a == "decoder.project_out.weight") return "decoder.project_out_dim.weight";
  if (a == "decoder.final_layer_norm.weight") return "decoder.layer_norm.weight";
  if (a == "decoder.final_layer_norm.bias") return "decoder.layer_norm.bias";
  return starts(a, "decoder.") ? a : "";
}

}  // namespace optforge
