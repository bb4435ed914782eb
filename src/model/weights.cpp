#include "model/weights.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "formats/any_file.h"
#include "util/error.h"

namespace optforge {
namespace {

namespace fs = std::filesystem;
using TensorMap = std::map<std::string, Tensor>;

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
void replace_once(std::string& s, const std::string& from, const std::string& to) {
  if (auto i = s.find(from); i != std::string::npos) s.replace(i, from.size(), to);
}

// What the config files say, when they say it; the shapes supply everything else.
struct Hints {
  std::optional<int64_t> heads;
  std::optional<bool> pre_ln;
  bool tied = true;
};

void read_hf_config(const fs::path& file, Hints& h) {
  std::ifstream in(file);
  if (!in) return;
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw Error(std::string("config.json is not valid JSON: ") + e.what(), file.string());
  }
  if (j.contains("num_attention_heads")) h.heads = j["num_attention_heads"].get<int64_t>();
  if (j.contains("do_layer_norm_before")) h.pre_ln = j["do_layer_norm_before"].get<bool>();
  if (j.contains("tie_word_embeddings")) h.tied = j["tie_word_embeddings"].get<bool>();
}

void read_metaseq_cfg(const AnyFile& f, Hints& h) {
  ValuePtr cfg = f.root->is_dict() ? f.root->get("cfg") : nullptr;
  ValuePtr model = cfg ? cfg->attr("model") : nullptr;
  if (!model && f.root->is_dict()) model = f.root->get("args");  // older fairseq checkpoints
  if (!model) return;
  if (auto v = model->attr("decoder_attention_heads"); v && v->is(Value::Kind::Int)) h.heads = v->i;
  if (auto v = model->attr("decoder_normalize_before"); v && v->is(Value::Kind::Bool)) h.pre_ln = v->b;
}

// metaseq's fused projection holds K, V, Q (in that order) stacked on dim 0.
void split_qkv(const std::string& name, const Tensor& t, TensorMap& out) {
  Tensor c = t.contiguous();
  const int64_t rows = c.shape[0] / 3;
  if (c.shape[0] % 3) throw Error("fused qkv_proj has " + std::to_string(c.shape[0]) + " rows, not a multiple of 3", "", name);
  const int64_t per = rows * (c.dim() == 2 ? c.shape[1] : 1);
  const char* parts[] = {"k_proj", "v_proj", "q_proj"};
  for (int j = 0; j < 3; ++j) {
    Tensor p = c;
    p.shape[0] = rows;
    p.strides = Tensor::contiguous_strides(p.shape);
    p.offset = c.offset + j * per;
    std::string n = name;
    replace_once(n, "qkv_proj", parts[j]);
    out[n] = p;
  }
}

// Every spelling we accept, rewritten to one: HF's names without the `model.` prefix.
void add_canonical(const std::string& raw, const Tensor& t, TensorMap& out) {
  std::string n = raw;
  if (starts_with(n, "model.")) n = n.substr(6);
  if (n == "decoder.version" || ends_with(n, "flat_param_0") || ends_with(n, "flat_param")) {
    if (n != "decoder.version")
      throw Error("this is an FSDP-flattened (sharded) checkpoint; consolidate it first (optforge consolidate)", "", raw);
    return;
  }
  if (n == "decoder.output_projection.weight") n = "lm_head.weight";  // metaseq's tied head
  if (starts_with(n, "decoder.layer_norm.")) replace_once(n, "decoder.layer_norm.", "decoder.final_layer_norm.");
  replace_once(n, "decoder.project_in_dim.", "decoder.project_in.");
  replace_once(n, "decoder.project_out_dim.", "decoder.project_out.");
  if (n.find(".qkv_proj.") != std::string::npos) return split_qkv(n, t, out);
  out[n] = t;
}

// The files that hold an HF directory's weights.
std::vector<fs::path> weight_files(const fs::path& dir) {
  for (const char* index : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    std::ifstream in(dir / index);
    if (!in) continue;
    nlohmann::json j;
    in >> j;
    std::set<std::string> files;
    for (const auto& [k, v] : j.at("weight_map").items()) files.insert(v.get<std::string>());
    std::vector<fs::path> out;
    for (const auto& f : files) out.push_back(dir / f);
    return out;
  }
  for (const char* single : {"model.safetensors", "pytorch_model.bin"})
    if (fs::exists(dir / single)) return {dir / single};
  throw Error("no model.safetensors, pytorch_model.bin or their index in the directory", dir.string());
}

Tensor take(TensorMap& m, const std::string& name, const Shape& shape, const std::string& source) {
  auto it = m.find(name);
  if (it == m.end()) throw Error("missing tensor " + name, source);
  Tensor t = it->second;
  m.erase(it);
  if (t.shape != shape) {
    Tensor e;
    e.shape = shape;
    throw Error("shape " + t.shape_string() + ", expected " + e.shape_string(), source, name);
  }
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    throw Error(std::string("dtype ") + std::string(dtype_name(t.dtype)) + " is not supported (f32, f16, bf16)", source, name);
  t.check_bounds();
  return t.is_contiguous() ? t : t.contiguous();
}

std::optional<Tensor> take_optional(TensorMap& m, const std::string& name, const Shape& shape, const std::string& source) {
  if (!m.count(name)) return std::nullopt;
  return take(m, name, shape, source);
}

// The dimensions, read from the tensors themselves.
OptConfig infer_config(const TensorMap& m, const Hints& h, const std::string& source) {
  auto shape_of = [&](const std::string& n) -> const Shape& {
    auto it = m.find(n);
    if (it == m.end()) throw Error("missing tensor " + n + " (is this an OPT checkpoint?)", source);
    return it->second.shape;
  };
  OptConfig c;
  c.name = "checkpoint";
  const Shape& emb = shape_of("decoder.embed_tokens.weight");
  const Shape& pos = shape_of("decoder.embed_positions.weight");
  if (emb.size() != 2 || pos.size() != 2) throw Error("embedding tables must be 2-D", source);
  c.vocab = emb[0];
  c.input_dim = emb[1];
  c.embed_dim = pos[1];
  c.max_positions = pos[0] - 2;
  while (m.count("decoder.layers." + std::to_string(c.layers) + ".fc1.weight")) ++c.layers;
  if (c.layers == 0) throw Error("no decoder layers found", source);
  c.ffn_dim = shape_of("decoder.layers.0.fc1.weight")[0];
  c.pre_ln = h.pre_ln.value_or(m.count("decoder.final_layer_norm.weight") > 0);
  if (h.heads) {
    c.heads = *h.heads;
  } else if (c.embed_dim % 64 == 0) {
    c.heads = c.embed_dim / 64;  // every published OPT up to 1.3b has head_dim 64
  } else {
    throw Error("the number of attention heads is not recorded; pass --heads", source);
  }
  c.validate();
  return c;
}

}  // namespace

OptWeights load_opt_weights(const std::string& path, const WeightLoadOptions& opts) {
  Hints hints;
  TensorMap m;
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    files = weight_files(path);
    read_hf_config(fs::path(path) / "config.json", hints);
  } else {
    files = {path};
    read_hf_config(fs::path(path).parent_path() / "config.json", hints);
  }
  for (const auto& file : files) {
    AnyFile f = open_any(file.string());
    read_metaseq_cfg(f, hints);
    try {
      for (const auto& [name, t] : state_dict(f)) add_canonical(name, t, m);
    } catch (const Error& e) {
      throw e.with_file(file.string());
    }
  }
  if (opts.heads) hints.heads = opts.heads;

  OptWeights w;
  w.description = path;
  w.config = infer_config(m, hints, path);
  const OptConfig& c = w.config;
  const int64_t E = c.embed_dim, F = c.ffn_dim, Ein = c.input_dim;
  w.embed_tokens = take(m, "decoder.embed_tokens.weight", {c.vocab, Ein}, path);
  w.embed_positions = take(m, "decoder.embed_positions.weight", {c.max_positions + 2, E}, path);
  if (c.has_projections()) {
    w.project_in = take(m, "decoder.project_in.weight", {E, Ein}, path);
    w.project_out = take(m, "decoder.project_out.weight", {Ein, E}, path);
  }
  w.final_layer_norm_w = take_optional(m, "decoder.final_layer_norm.weight", {E}, path);
  w.final_layer_norm_b = take_optional(m, "decoder.final_layer_norm.bias", {E}, path);
  if (w.final_layer_norm_w.has_value() != w.final_layer_norm_b.has_value())
    throw Error("the final layer norm has a weight or a bias but not both", path);
  auto head = take_optional(m, "lm_head.weight", {c.vocab, Ein}, path);
  // OPT ties the head to the input embedding; HF re-ties on load even if the file stores a copy.
  w.lm_head = (head && !hints.tied) ? *head : w.embed_tokens;
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "decoder.layers." + std::to_string(l) + ".";
    OptLayerWeights L;
    L.q_proj_w = take(m, p + "self_attn.q_proj.weight", {E, E}, path);
    L.q_proj_b = take(m, p + "self_attn.q_proj.bias", {E}, path);
    L.k_proj_w = take(m, p + "self_attn.k_proj.weight", {E, E}, path);
    L.k_proj_b = take(m, p + "self_attn.k_proj.bias", {E}, path);
    L.v_proj_w = take(m, p + "self_attn.v_proj.weight", {E, E}, path);
    L.v_proj_b = take(m, p + "self_attn.v_proj.bias", {E}, path);
    L.out_proj_w = take(m, p + "self_attn.out_proj.weight", {E, E}, path);
    L.out_proj_b = take(m, p + "self_attn.out_proj.bias", {E}, path);
    L.self_attn_layer_norm_w = take(m, p + "self_attn_layer_norm.weight", {E}, path);
    L.self_attn_layer_norm_b = take(m, p + "self_attn_layer_norm.bias", {E}, path);
    L.fc1_w = take(m, p + "fc1.weight", {F, E}, path);
    L.fc1_b = take(m, p + "fc1.bias", {F}, path);
    L.fc2_w = take(m, p + "fc2.weight", {E, F}, path);
    L.fc2_b = take(m, p + "fc2.bias", {E}, path);
    L.final_layer_norm_w = take(m, p + "final_layer_norm.weight", {E}, path);
    L.final_layer_norm_b = take(m, p + "final_layer_norm.bias", {E}, path);
    w.layers.push_back(std::move(L));
  }
  return w;
}

}  // namespace optforge
