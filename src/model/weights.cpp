#include "model/weights.h"

#include "convert/opt_tensors.h"
#include "util/error.h"

namespace optforge {
namespace {

// A weight the kernels can read directly: in memory, contiguous, f32/f16/bf16. Views of an
// mmapped file stay views; tensors produced on the fly (a sharded checkpoint consolidated while
// loading) or stored as strided views are materialised once.
Tensor ready(const OptTensors& m, const std::string& name) {
  Tensor t = m.get(name);
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    throw Error("dtype " + std::string(dtype_name(t.dtype)) + " is not supported (f32, f16, bf16)", m.layout, name);
  return t.is_contiguous() && !t.storage->is_lazy() ? t : t.contiguous();
}

}  // namespace

OptWeights load_opt_weights(const std::string& path, const WeightLoadOptions& opts) {
  ReadModelOptions ro;
  ro.heads = opts.heads;
  // No guess: a checkpoint that records no head count needs --heads (or a published shape).
  ro.threads = 2;
  const OptTensors m = read_opt_model(path, ro);  // every layout optforge reads, names mapped once
  OptWeights w;
  w.description = path + " (" + m.layout + ")";
  w.config = m.config;
  const OptConfig& c = w.config;
  w.embed_tokens = ready(m, "decoder.embed_tokens.weight");
  w.embed_positions = ready(m, "decoder.embed_positions.weight");
  if (c.has_projections()) {
    w.project_in = ready(m, "decoder.project_in_dim.weight");
    w.project_out = ready(m, "decoder.project_out_dim.weight");
  }
  if (c.pre_ln) {
    w.final_layer_norm_w = ready(m, "decoder.layer_norm.weight");
    w.final_layer_norm_b = ready(m, "decoder.layer_norm.bias");
  }
  w.lm_head = w.embed_tokens;  // OPT ties its head to the input embedding
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "decoder.layers." + std::to_string(l) + ".";
    auto t = [&](const char* n) { return ready(m, p + n); };
    OptLayerWeights L;
    L.q_proj_w = t("self_attn.q_proj.weight");
    L.q_proj_b = t("self_attn.q_proj.bias");
    L.k_proj_w = t("self_attn.k_proj.weight");
    L.k_proj_b = t("self_attn.k_proj.bias");
    L.v_proj_w = t("self_attn.v_proj.weight");
    L.v_proj_b = t("self_attn.v_proj.bias");
    L.out_proj_w = t("self_attn.out_proj.weight");
    L.out_proj_b = t("self_attn.out_proj.bias");
    L.self_attn_layer_norm_w = t("self_attn_layer_norm.weight");
    L.self_attn_layer_norm_b = t("self_attn_layer_norm.bias");
    L.fc1_w = t("fc1.weight");
    L.fc1_b = t("fc1.bias");
    L.fc2_w = t("fc2.weight");
    L.fc2_b = t("fc2.bias");
    L.final_layer_norm_w = t("final_layer_norm.weight");
    L.final_layer_norm_b = t("final_layer_norm.bias");
    w.layers.push_back(std::move(L));
  }
  return w;
}

}  // namespace optforge
