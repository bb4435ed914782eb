#include "convert/opt_tensors.h"

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "checkpoint/consolidate.h"
#include "formats/any_file.h"
#include "formats/npy.h"
#include "io/mmap_file.h"
#include "opt/names.h"
#include "tensor/views.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace optforge {

const Tensor& OptTensors::get(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  throw Error("model has no tensor '" + name + "'", layout);
}

DType OptTensors::dtype() const { return get("decoder.embed_tokens.weight").dtype; }

namespace {

int64_t heads_for(int64_t embed_dim, bool guess, const std::string& source) {
  for (const auto& n : published_opt_names()) {
    auto c = published_opt_config(n);
    if (c->embed_dim == embed_dim) return c->heads;
  }
  if (guess && embed_dim % 64 == 0) return embed_dim / 64;
  throw Error("cannot tell the number of attention heads for hidden size " + std::to_string(embed_dim) +
              " (not a published OPT size); pass --heads", source);
}

}  // namespace

OptTensors opt_model_from_metaseq(std::vector<std::pair<std::string, Tensor>> named, int64_t heads,
                                const std::string& source) {
  std::map<std::string, Tensor> by_name;
  for (auto& [name, t] : named) {
    if (name == "decoder.version" || name == "decoder.output_projection.weight") continue;
    if (name.find(".qkv_proj.") != std::string::npos) {  // metaseq fused rows: K, V, Q
      auto parts = chunk(t, 0, 3);
      const char* kvq[] = {"k_proj", "v_proj", "q_proj"};
      for (int j = 0; j < 3; ++j) {
        std::string n = name;
        n.replace(n.find("qkv_proj"), 8, kvq[j]);
        by_name.emplace(n, parts[size_t(j)]);
      }
      continue;
    }
    if (!by_name.emplace(name, t).second) throw Error("tensor '" + name + "' appears twice", source);
  }
  auto need = [&](const std::string& n) -> const Tensor& {
    auto it = by_name.find(n);
    if (it == by_name.end()) throw Error("missing tensor '" + n + "'", source);
    return it->second;
  };
  const Tensor& emb = need("decoder.embed_tokens.weight");
  const Tensor& pos = need("decoder.embed_positions.weight");
  if (emb.dim() != 2 || pos.dim() != 2) throw Error("embeddings must be 2-d", source);
  OptConfig c;
  c.name = "custom";
  c.vocab = emb.shape[0];
  c.input_dim = emb.shape[1];
  c.embed_dim = pos.shape[1];
  c.max_positions = pos.shape[0] - 2;
  c.pre_ln = by_name.count("decoder.layer_norm.weight") > 0;
  int64_t layers = 0;
  for (const auto& [n, t] : by_name)
    if (n.rfind("decoder.layers.", 0) == 0) layers = std::max<int64_t>(layers, std::stoll(n.substr(15)) + 1);
  c.layers = layers;
  c.ffn_dim = layers ? need("decoder.layers.0.fc1.weight").shape.at(0) : 4 * c.embed_dim;
  c.heads = heads > 0 ? heads : heads_for(c.embed_dim, heads < 0, source);
  for (const auto& n : published_opt_names()) {
    auto p = published_opt_config(n);
    if (p->layers == c.layers && p->embed_dim == c.embed_dim && p->input_dim == c.input_dim &&
        p->heads == c.heads && p->pre_ln == c.pre_ln && p->vocab == c.vocab && p->max_positions == c.max_positions)
      c.name = n;
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw e.with_file(source);
  }
  OptTensors m;
  m.config = c;
  m.layout = source;
  std::set<std::string> expected;
  for (const ParamSpec& p : metaseq_singleton_params(c)) {
    const Tensor& t = need(p.name);
    if (t.shape != p.shape)
      throw Error("shape " + t.shape_string() + ", expected " + Tensor{DType::F32, p.shape}.shape_string() +
                  " for this model (L=" + std::to_string(c.layers) + ", E=" + std::to_string(c.embed_dim) +
                  ", F=" + std::to_string(c.ffn_dim) + ")", source, "tensor '" + p.name + "'");
    m.tensors.emplace_back(p.name, t);
    expected.insert(p.name);
  }
  for (const auto& [n, t] : by_name)
    if (!expected.count(n)) throw Error("unknown tensor name '" + n + "' for an OPT model", source);
  const DType dt = emb.dtype;
  for (const auto& [n, t] : m.tensors)
    if (t.dtype != dt) throw Error("dtype " + std::string(dtype_name(t.dtype)) + " differs from the embedding's " +
                                   std::string(dtype_name(dt)), source, "tensor '" + n + "'");
  return m;
}

namespace {

int64_t cfg_heads(const ValuePtr& root) {
  if (!root || !root->is_dict()) return 0;
  auto cfg = root->get("cfg");
  ValuePtr model = cfg ? cfg->attr("model") : nullptr;
  ValuePtr h = model ? model->attr("decoder_attention_heads") : nullptr;
  if (!h) {
    auto args = root->get("args");
    h = args ? args->attr("decoder_attention_heads") : nullptr;
  }
  return h && h->kind == Value::Kind::Int ? h->i : 0;
}

// A dict of HF-named (or metaseq-named) tensors -> metaseq names; lm_head must be the tied
// embedding if present.
std::vector<std::pair<std::string, Tensor>> from_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd,
                                                            const std::string& source) {
  std::vector<std::pair<std::string, Tensor>> out;
  const Tensor* lm_head = nullptr;
  for (const auto& [n, t] : sd) {
    if (n == "lm_head.weight") {
      lm_head = &t;
      continue;
    }
    // HF names (with or without "model.") and metaseq names both map to metaseq names.
    std::string m = metaseq_name_from_hf(n);
    if (m.empty()) throw Error("unknown tensor name '" + n + "' for an OPT model", source);
    out.emplace_back(m, t);
  }
  if (lm_head) {
    const Tensor* emb = nullptr;
    for (const auto& [n, t] : out)
      if (n == "decoder.embed_tokens.weight") emb = &t;
    if (emb && (lm_head->shape != emb->shape || lm_head->dtype != emb->dtype))
      throw Error("lm_head.weight " + lm_head->shape_string() + " is not the tied embedding " + emb->shape_string(), source);
  }
  return out;
}

// A JSON file that must hold an object; any other content is an Error naming the file.
nlohmann::json read_json_object(const fs::path& path, const char* name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path.string()));
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string(name) + " is not valid JSON: " + e.what(), path.string());
  }
  if (!j.is_object()) throw Error(std::string(name) + " holds a " + j.type_name() + ", expected a JSON object", path.string());
  return j;
}

// The weights files a sharded save's index names: {"weight_map": {tensor: file}}. Each must be a
// file name inside the folder (an index never reaches outside it).
std::vector<std::string> index_files(const fs::path& path) {
  const nlohmann::json idx = read_json_object(path, "the index");
  const auto map = idx.find("weight_map");
  if (map == idx.end() || !map->is_object())
    throw Error("expected \"weight_map\": {tensor name: file name}", path.string());
  std::set<std::string> uniq;
  for (const auto& [k, v] : map->items()) {
    if (!v.is_string()) throw Error("weight_map value is a " + std::string(v.type_name()) + ", expected a file name", path.string(), "tensor '" + k + "'");
    const std::string f = v.get<std::string>();
    if (f.empty() || f == "." || f == ".." || f.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      throw Error("weight_map names '" + f + "', expected the name of a file in this folder", path.string(), "tensor '" + k + "'");
    uniq.insert(f);
  }
  return {uniq.begin(), uniq.end()};
}

OptTensors read_hf_folder(const fs::path& dir) {
  const std::string src = dir.string();
  const fs::path cfg_path = dir / "config.json";
  const nlohmann::json cfg = read_json_object(cfg_path, "config.json");
  const auto model_type = cfg.find("model_type");
  if (model_type == cfg.end() || *model_type != "opt")
    throw Error("model_type is " + (model_type == cfg.end() ? std::string("missing") : model_type->dump()) + ", expected \"opt\"",
                cfg_path.string());
  std::vector<std::string> files;
  for (const char* index : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    if (!fs::exists(dir / index)) continue;
    files = index_files(dir / index);
    break;
  }
  if (files.empty())
    for (const char* single : {"model.safetensors", "pytorch_model.bin"})
      if (fs::exists(dir / single)) {
        files.push_back(single);
        break;
      }
  if (files.empty())
    throw Error("HF folder has config.json but no weights (model.safetensors, pytorch_model.bin or an index)", src);
  std::vector<std::pair<std::string, Tensor>> sd;
  for (const auto& f : files) {
    std::error_code ec;  // e.g. a name longer than the file system allows
    if (!fs::exists(dir / f, ec))
      throw Error(ec ? "cannot access the weights file the index names: " + ec.message() : "weights file listed in the index is missing",
                  (dir / f).string());
    auto part = state_dict(open_any((dir / f).string()));
    sd.insert(sd.end(), part.begin(), part.end());
  }
  int64_t heads = 0;
  if (cfg.contains("num_attention_heads")) {
    const auto& h = cfg["num_attention_heads"];
    if (!h.is_number_integer() || h.get<int64_t>() < 1 || h.get<int64_t>() > (int64_t(1) << 30))
      throw Error("num_attention_heads is " + h.dump() + ", expected a positive integer", cfg_path.string());
    heads = h.get<int64_t>();
  }
  OptTensors m = opt_model_from_metaseq(from_state_dict(sd, src), heads, src);
  auto check = [&](const char* key, int64_t have) {
    if (cfg.contains(key) && cfg[key].is_number_integer() && cfg[key].get<int64_t>() != have)
      throw Error(std::string("config.json says ") + key + " = " + std::to_string(cfg[key].get<int64_t>()) +
                  " but the weights have " + std::to_string(have), cfg_path.string());
  };
  check("hidden_size", m.config.embed_dim);
  check("num_hidden_layers", m.config.layers);
  check("ffn_dim", m.config.ffn_dim);
  check("vocab_size", m.config.vocab);
  check("word_embed_proj_dim", m.config.input_dim);
  check("max_position_embeddings", m.config.max_positions);
  if (cfg.contains("do_layer_norm_before") && !cfg["do_layer_norm_before"].is_boolean())
    throw Error("do_layer_norm_before is " + cfg["do_layer_norm_before"].dump() + ", expected true or false", cfg_path.string());
  if (cfg.contains("do_layer_norm_before") && cfg["do_layer_norm_before"].get<bool>() != m.config.pre_ln)
    throw Error("config.json's do_layer_norm_before disagrees with the weights (final layer norm " +
                std::string(m.config.pre_ln ? "present" : "absent") + ")", cfg_path.string());
  m.layout = "Hugging Face folder";
  return m;
}

OptTensors read_alpa_folder(const fs::path& dir, int64_t heads) {
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string n = e.path().filename().string();
    if (n.rfind("decoder.", 0) != 0) continue;
    std::string m = metaseq_name_from_alpa(n);
    if (m.empty()) throw Error("unknown tensor file in an alpa folder", e.path().string());
    named.emplace_back(m, load_npy(e.path().string()));
  }
  OptTensors m = opt_model_from_metaseq(std::move(named), heads, dir.string());
  m.layout = "alpa numpy folder";
  return m;
}

}  // namespace

// A sharded metaseq checkpoint (MP parts x FSDP shards, released flat files, unflattened parts),
// consolidated on the fly: the plan's tensors produce their bytes from the inputs when written.
OptTensors read_sharded_metaseq(const std::string& path, const ReadModelOptions& opts) {
  ckpt::ConsolidateOptions co;
  co.input = path;
  co.output = "consolidated.pt";  // names nothing: the plan's outputs are streamed, not executed
  co.threads = opts.threads;
  auto plan = std::make_shared<ckpt::Plan>(ckpt::plan_consolidate(co));
  ckpt::ExecOptions eo;
  eo.threads = opts.threads;
  ckpt::check_replicas(*plan, eo);
  ValuePtr root = plan->outputs.at(0).root;
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& [k, v] : root->get("model")->entries)
    if (v->is_tensor()) named.emplace_back(k->s, *v->tensor);
  OptTensors m = opt_model_from_metaseq(std::move(named), opts.heads ? opts.heads : cfg_heads(root), path);
  m.metaseq_root = root;
  m.layout = "sharded metaseq checkpoint (" + std::to_string(plan->input->files.parts()) + " MP parts x " +
             std::to_string(plan->input->files.shards()) + " FSDP shards, consolidated on the fly)";
  m.keep_alive = plan;
  return m;
}

OptTensors read_opt_model(const std::string& path, const ReadModelOptions& opts) {
  fs::path p(path);
  if (fs::is_directory(p)) {
    if (fs::exists(p / "config.json")) return read_hf_folder(p);
    if (fs::exists(p / "decoder.embed_tokens.weight"))
      return read_alpa_folder(p, opts.heads ? opts.heads : (opts.guess_heads ? -1 : 0));
    return read_sharded_metaseq(path, opts);  // or a clear error naming what was expected
  }
  if (!fs::exists(p)) return read_sharded_metaseq(path, opts);  // a prefix: DIR/checkpoint_last
  AnyFile f = open_any(path);
  auto sd = state_dict(f);
  std::string layout = describe_layout(f);
  if (layout.find("flat") != std::string::npos || f.root->get("shard_metadata"))
    return read_sharded_metaseq(path, opts);  // one file of a sharded set (or a flat reshard.pt)
  int64_t heads = opts.heads ? opts.heads : cfg_heads(f.root);
  const fs::path sibling_config = p.parent_path() / "config.json";  // a weights file of an HF folder
  if (!heads && fs::exists(sibling_config)) {
    auto j = nlohmann::json::parse(read_text_file(sibling_config.string()), nullptr, false);
    if (j.is_object() && j.value("model_type", "") == "opt") heads = j.value("num_attention_heads", int64_t(0));
  }
  if (!heads && opts.guess_heads) heads = -1;
  OptTensors m = opt_model_from_metaseq(from_state_dict(sd, path), heads, path);
  if (f.root->get("model")) {
    m.metaseq_root = f.root;
    m.layout = "metaseq singleton";
  } else {
    m.layout = std::string(file_format_name(f.format)) + " state dict";
  }
  return m;
}

}  // namespace optforge
