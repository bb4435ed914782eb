#include "convert/opt_tensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>
#include <vector>

#include "checkpoint/consolidate.h"
#include "checkpoint/layout.h"
#include "formats/any_file.h"
#include "formats/npy.h"
#include "io/json_file.h"
#include "io/mmap_file.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "tensor/quantize_int4.h"
#include "tensor/views.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace optforge {

const Tensor* OptTensors::find(Role role, int64_t layer) const {
  const std::string name = role_name(role_spec(role), Layout::Metaseq, layer);
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

DType OptTensors::dtype() const {
  if (tensors.empty()) throw Error("model has no tensors", layout);
  return tensors.front().second.dtype;  // the token embedding: table order
}

namespace {

// The input's tensors by role: fused qkv split into K, V, Q (metaseq's row order), the tied
// head checked against the embedding and dropped, metaseq's version buffer dropped.
struct ByRole {
  std::map<std::pair<int64_t, Role>, std::pair<std::string, Tensor>> t;       // (layer, role) -> (input name, tensor)
  std::map<std::pair<int64_t, Role>, std::pair<std::string, Tensor>> scales;  // int8 matrices' "<name>_scale"
  const Tensor* find(Role r, int64_t layer = -1) const {
    auto it = t.find({role_spec(r).scope == Scope::Layer ? layer : -1, r});
    return it == t.end() ? nullptr : &it->second.second;
  }
  bool has(Role r, int64_t layer = -1) const { return find(r, layer) != nullptr; }
};

// The same shape, dtype and bytes (a shared storage view is not read).
bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape != b.shape || a.dtype != b.dtype) return false;
  if (a.storage == b.storage && a.offset == b.offset && a.strides == b.strides) return true;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data(), cb.data(), size_t(ca.nbytes())) == 0;
}

void add_role(ByRole& m, RoleRef ref, std::string name, Tensor t, const std::string& source, bool scale = false) {
  auto& to = scale ? m.scales : m.t;
  if (!to.emplace(std::make_pair(ref.layer, ref.role), std::make_pair(name, t)).second)
    throw Error("tensor '" + name + "' appears twice (under this or another spelling)", source);
}

// "<matrix name>_scale": the role of the matrix it scales; nullopt for any other name.
std::optional<RoleRef> scale_role(const std::string& name) {
  if (name.size() <= kScaleSuffix.size() ||
      name.compare(name.size() - kScaleSuffix.size(), std::string::npos, kScaleSuffix.data(), kScaleSuffix.size()) != 0)
    return std::nullopt;
  return parse_any_role_name(name.substr(0, name.size() - kScaleSuffix.size()));
}

ByRole by_role(std::vector<std::pair<std::string, Tensor>> named, const std::string& source) {
  ByRole m;
  std::optional<Tensor> head;
  for (auto& [name, t] : named) {
    if (name == "decoder.version") continue;
    auto ref = parse_any_role_name(name);
    const auto scaled = ref ? std::nullopt : scale_role(name);
    if (scaled) {  // an int8 matrix's row scales (fused qkv: split as its rows are)
      if (scaled->role == Role::QkvWeight) {
        const auto kvq = kvq_roles(scaled->role);
        auto parts = chunk(t, 0, 3);
        for (size_t j = 0; j < 3; ++j) add_role(m, {kvq[j], scaled->layer}, name, parts[j], source, true);
      } else {
        add_role(m, *scaled, name, t, source, true);
      }
      continue;
    }
    if (!ref) throw Error("unknown tensor name '" + name + "' for an OPT model", source);
    if (ref->role == Role::LmHead) {
      head = t;
    } else if (ref->role == Role::QkvWeight || ref->role == Role::QkvBias) {
      const auto kvq = kvq_roles(ref->role);
      auto parts = chunk(t, 0, 3);
      for (size_t j = 0; j < 3; ++j) add_role(m, {kvq[j], ref->layer}, name, parts[j], source);
    } else {
      add_role(m, *ref, name, t, source);
    }
  }
  const Tensor* emb = m.find(Role::TokenEmbed);
  if (head && emb && !same_values(*head, *emb))
    throw Error("the output projection (lm_head) " + head->shape_string() + " " + std::string(dtype_name(head->dtype)) +
                    " differs from the token embedding " + emb->shape_string() + " " +
                    std::string(dtype_name(emb->dtype)) +
                    ": OPT ties them, and optforge runs and writes tied heads only",
                source);
  return m;
}

// Dimensions from the tensors; switches from the source's config, else from what is present.
OptConfig infer_config(const ByRole& m, const SourceConfig& sc, const std::string& source) {
  const Tensor* emb = m.find(Role::TokenEmbed);
  const Tensor* pos = m.find(Role::Positions);
  if (!emb) throw Error("missing tensor '" + role_name(role_spec(Role::TokenEmbed), Layout::Metaseq) + "'", source);
  if (!pos) throw Error("missing tensor '" + role_name(role_spec(Role::Positions), Layout::Metaseq) + "'", source);
  if (emb->dim() != 2 || pos->dim() != 2) throw Error("embeddings must be 2-d", source);
  OptConfig c;
  c.name = "custom";
  c.vocab = emb->shape[0];
  c.input_dim = emb->shape[1];
  c.embed_dim = pos->shape[1];
  c.max_positions = pos->shape[0] - kPositionOffset;
  for (const auto& [key, v] : m.t) c.layers = std::max<int64_t>(c.layers, key.first + 1);
  const Tensor* fc1 = m.find(Role::Fc1Weight, 0);
  c.ffn_dim = fc1 && fc1->dim() == 2 ? fc1->shape[0] : 4 * c.embed_dim;
  c.activation = sc.activation.value_or(Activation::Relu);
  c.enable_bias = sc.enable_bias.value_or(c.layers == 0 || m.has(Role::Fc1Bias, 0));
  c.ln_affine = sc.ln_affine.value_or(c.layers ? m.has(Role::AttnNormWeight, 0) : m.has(Role::FinalNormWeight));
  const bool final_norm = m.has(Role::FinalNormWeight);
  if (sc.pre_ln)
    c.pre_ln = *sc.pre_ln;
  else if (c.ln_affine)
    c.pre_ln = final_norm;  // what tells 350m-style (post-LN) models apart
  else
    throw Error("layer norms without weights: cannot tell pre-LN from post-LN without a config (config.json)", source);
  c.remove_final_norm = sc.remove_final_norm.value_or(c.pre_ln && c.ln_affine && !final_norm);
  c.pad_token_id = sc.pad_token_id.value_or(c.pad_token_id);
  c.bos_token_id = sc.bos_token_id.value_or(c.bos_token_id);
  c.eos_token_id = sc.eos_token_id.value_or(c.eos_token_id);
  c.heads = sc.heads.value_or(0);  // 0 until decided (decide_heads)
  return c;
}

// The sizes the source's config states against those the tensors have.
void check_stated_sizes(const OptConfig& c, const SourceConfig& sc, const std::string& source) {
  auto check = [&](const char* key, const std::optional<int64_t>& stated, int64_t have) {
    if (stated && *stated != have)
      throw Error(std::string("config says ") + key + " = " + std::to_string(*stated) + " but the weights have " +
                      std::to_string(have),
                  sc.file.empty() ? source : sc.file);
  };
  check("hidden_size", sc.embed_dim, c.embed_dim);
  check("num_hidden_layers", sc.layers, c.layers);
  check("ffn_dim", sc.ffn_dim, c.ffn_dim);
  check("vocab_size", sc.vocab, c.vocab);
  check("word_embed_proj_dim", sc.input_dim, c.input_dim);
  check("max_position_embeddings", sc.max_positions, c.max_positions);
}

// The head count and name, from one published-shape match (every dimension, heads when stated).
// The tensors' shapes do not tell the head count, so only a published OPT model of exactly this
// shape names an unstated one: a hidden size alone is no evidence. Returns whether it is known.
bool decide_heads(OptConfig& c, bool stated, bool may_be_unknown, const std::string& source) {
  const auto match = published_match(c);
  c.name = match.value_or("custom");
  bool known = stated;  // validate() refuses a stated count that is not positive
  if (!known && match) {
    c.heads = published_opt_config(*match)->heads;
    known = true;
  }
  if (!known && !may_be_unknown)
    throw Error(
        "cannot tell the number of attention heads: the checkpoint does not record it (no metaseq cfg, "
        "no config.json) and its shape (" +
            std::to_string(c.layers) + " layers, hidden size " + std::to_string(c.embed_dim) +
            ") is not a published OPT model's; pass --heads",
        source);
  if (!known) c.heads = 1;  // a placeholder that validates; OptTensors::heads_known says it is not real
  try {
    c.validate();
  } catch (const Error& e) { throw e.with_file(source); }
  return known;
}

// Scales are finite (int8's are max |row| / 127, so also >= 0; int4's carry the sign of their
// group's largest weight). Anything else is a damaged file, refused here rather than run: a NaN
// scale silently turns a row into NaNs.
void check_scale_values(const Tensor& sc, bool int4, const std::string& source, const std::string& what) {
  const Tensor v = sc.is_contiguous() && !sc.storage->is_lazy() ? sc : sc.contiguous();
  std::vector<float> f(size_t(v.numel()));
  convert_elements(v.dtype, v.data(), DType::F32, reinterpret_cast<uint8_t*>(f.data()), f.size());
  for (size_t n = 0; n < f.size(); ++n)
    if (!std::isfinite(f[n]) || (!int4 && f[n] < 0))
      throw Error("scale " + std::to_string(n) + " is " + std::to_string(f[n]) +
                      (int4 ? ": int4 group scales are finite" : ": int8 scales are max |row| / 127, finite and >= 0"),
                  source, what);
}

// A quantized matrix's scales into out.scales (at the index the matrix is about to take):
// quantized only matmul weights, each with its scale tensor: int8 (I8 [N, K]) F32 [N]; int4 (U8
// [N, K / 2], tensor/quantize_int4.h) F16 [N, ceil(K / 32)].
void take_scale(OptTensors& out, const ByRole& m, const ParamSpec& p, const Tensor& t, const std::string& source) {
  if (t.dtype != DType::I8 && t.dtype != DType::U8) return;
  const bool int4 = t.dtype == DType::U8;
  const char* scheme = int4 ? "int4" : "int8";
  const RoleSpec& r = role_spec(p.ref.role);
  const auto key = std::make_pair(r.scope == Scope::Layer ? p.ref.layer : -1, p.ref.role);
  const std::string what = "tensor '" + m.t.at(key).first + "'";  // as the input names it
  if (!r.is_matmul())
    throw Error(std::string(scheme) + " is stored only for matmul weights, not for the " + r.id, source, what);
  const Shape want = int4 ? Shape{t.shape[0], int4_groups(p.shape[1])} : Shape{t.shape[0]};
  const std::string want_s = std::string(int4 ? "f16 [" : "f32 [") + std::to_string(want[0]) +
                             (int4 ? ", " + std::to_string(want[1]) : std::string()) + "]";
  auto it = m.scales.find(key);
  if (it == m.scales.end())
    throw Error(std::string(scheme) + " weight without its " + (int4 ? "group" : "row") +
                    " scales (a tensor named as the weight + '" + std::string(kScaleSuffix) + "', " + want_s + ")",
                source, what);
  const Tensor& sc = it->second.second;
  if (sc.dtype != (int4 ? DType::F16 : DType::F32) || sc.shape != want)
    throw Error(
        "scale tensor is " + std::string(dtype_name(sc.dtype)) + " " + sc.shape_string() + ", expected " + want_s,
        source, "tensor '" + it->second.first + "'");
  check_scale_values(sc, int4, source, "tensor '" + it->second.first + "'");
  out.scales.emplace(out.tensors.size(), sc);
}

// The shape a tensor of role p must have as stored: an int4 matrix's packed bytes hold two
// columns each (K even; an odd K has no int4 form).
Shape stored_shape(const ParamSpec& p, const Tensor& t) {
  if (t.dtype != DType::U8 || p.shape.size() != 2 || p.shape[1] % 2) return p.shape;
  return {p.shape[0], p.shape[1] / 2};
}

// Exactly the tensors the config calls for, with their shapes and one dtype, in table order.
void take_expected(OptTensors& out, const ByRole& m, const std::string& source) {
  const OptConfig& c = out.config;
  size_t found = 0;
  for (const ParamSpec& p : layout_params(c, Layout::Metaseq)) {
    const Tensor* t = m.find(p.ref.role, p.ref.layer);
    if (!t) throw Error("missing tensor '" + p.name + "'" + met_need(role_spec(p.ref.role), c), source);
    if (t->shape != stored_shape(p, *t))
      throw Error("shape " + t->shape_string() + ", expected " +
                      Tensor{DType::F32, stored_shape(p, *t)}.shape_string() +
                      (t->dtype == DType::U8 ? " (int4: two columns a byte)" : "") +
                      " for this model (L=" + std::to_string(c.layers) + ", E=" + std::to_string(c.embed_dim) +
                      ", F=" + std::to_string(c.ffn_dim) + ")",
                  source, "tensor '" + p.name + "'");
    take_scale(out, m, p, *t, source);
    out.tensors.emplace_back(p.name, *t);
    out.roles.push_back(p.ref);
    ++found;
  }
  for (const auto& [key, v] : m.scales)
    if (!m.find(key.second, key.first) ||
        (m.find(key.second, key.first)->dtype != DType::I8 && m.find(key.second, key.first)->dtype != DType::U8))
      throw Error("scale tensor for a weight that is not stored as int8 or int4 (or not in this model)", source,
                  "tensor '" + v.first + "'");
  if (found != m.t.size())
    for (const auto& [key, v] : m.t) {
      const RoleSpec& r = role_spec(key.second);
      if (role_stored(r, c, Layout::Metaseq) && key.first < c.layers) continue;
      const char* unmet = unmet_need(r, c);
      const char* why = unmet ? unmet : "not expected";
      throw Error("tensor '" + v.first + "' does not belong in this model (" + r.id + ": " + why + ")", source);
    }
  const DType dt = out.tensors.front().second.dtype;
  for (const auto& [n, t] : out.tensors)
    if (t.dtype != dt && t.dtype != DType::I8 && t.dtype != DType::U8)  // quantized matrices: take_scale
      throw Error(
          "dtype " + std::string(dtype_name(t.dtype)) + " differs from the embedding's " + std::string(dtype_name(dt)),
          source, "tensor '" + n + "'");
}

}  // namespace

OptTensors opt_model_from_named(std::vector<std::pair<std::string, Tensor>> named, const SourceConfig& sc,
                                const std::string& source, bool heads_may_be_unknown) {
  const ByRole m = by_role(std::move(named), source);
  OptTensors out;
  out.config = infer_config(m, sc, source);
  check_stated_sizes(out.config, sc, source);
  out.heads_known = decide_heads(out.config, sc.heads.has_value(), heads_may_be_unknown, source);
  out.layout = source;
  take_expected(out, m, source);
  return out;
}

namespace {

// What a metaseq cfg says about the architecture (fields absent: inferred from the tensors).
// Throws for an activation_fn optforge does not run: the model must not run as relu.
SourceConfig metaseq_source_config(const ckpt::CfgFields& f, const std::string& source) {
  SourceConfig sc;
  sc.file = source;
  sc.heads = f.decoder_attention_heads;
  if (f.activation_fn) {
    sc.activation = activation_from_name(*f.activation_fn);
    if (!sc.activation)
      throw Error(
          "cfg's activation_fn '" + *f.activation_fn + "' is not one OPT's decoder runs (relu, gelu, gelu_accurate)",
          source);
  }
  // fairseq/metaseq: pre-LN models drop their final LN only with no_decoder_final_norm.
  if (f.no_decoder_final_norm.value_or(false) && f.decoder_normalize_before) {
    sc.pre_ln = *f.decoder_normalize_before;
    sc.remove_final_norm = *f.decoder_normalize_before;
  }
  return sc;
}

// The weights files a sharded save's index names: {"weight_map": {tensor: file}}. Each must be a
// file name inside the folder (an index never reaches outside it).
std::vector<std::string> index_files(const fs::path& path) {
  const nlohmann::json idx = read_json_object(path.string());
  const auto map = idx.find("weight_map");
  if (map == idx.end() || !map->is_object())
    throw Error("expected \"weight_map\": {tensor name: file name}", path.string());
  std::set<std::string> uniq;
  for (const auto& [k, v] : map->items()) {
    if (!v.is_string())
      throw Error("weight_map value is a " + std::string(v.type_name()) + ", expected a file name", path.string(),
                  "tensor '" + k + "'");
    const std::string f = v.get<std::string>();
    if (f.empty() || f == "." || f == ".." || f.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      throw Error("weight_map names '" + f + "', expected the name of a file in this folder", path.string(),
                  "tensor '" + k + "'");
    uniq.insert(f);
  }
  return {uniq.begin(), uniq.end()};
}

// An HF config (config.json, or optforge's own safetensors __metadata__ opt_config, parsed with
// parse_json_object) -> what it states. It must say model_type "opt"; keys absent take
// transformers' OPTConfig defaults (num_attention_heads 12, relu, biases, ...), as transformers
// would load it, except the sizes, which the tensors tell and a stated one is checked against.
SourceConfig hf_source_config_from(const nlohmann::json& cfg, const std::string& file) {
  const auto model_type = cfg.find("model_type");
  if (model_type == cfg.end() || *model_type != "opt")
    throw Error("model_type is " + (model_type == cfg.end() ? std::string("missing") : model_type->dump()) +
                    ", expected \"opt\"",
                file);
  SourceConfig sc;
  sc.file = file;
  auto flag = [&](const char* key, bool def) {
    if (!cfg.contains(key)) return def;
    if (!cfg[key].is_boolean()) throw Error(std::string(key) + " must be true or false", file);
    return cfg[key].get<bool>();
  };
  auto integer = [&](const char* key) -> std::optional<int64_t> {
    if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
    if (!cfg[key].is_number_integer()) throw Error(std::string(key) + " must be an integer", file);
    return cfg[key].get<int64_t>();
  };
  sc.heads = integer("num_attention_heads").value_or(12);
  if (*sc.heads < 1 || *sc.heads > (int64_t(1) << 30))
    throw Error("num_attention_heads is " + cfg["num_attention_heads"].dump() + ", expected a positive integer", file);
  if (!flag("tie_word_embeddings", true))
    throw Error(
        "tie_word_embeddings is false: OPT ties its output projection to the token embedding, and optforge "
        "runs and writes tied heads only",
        file);
  if (cfg.contains("activation_function") && !cfg["activation_function"].is_string())
    throw Error("activation_function must be a string", file);
  const std::string act = cfg.value("activation_function", std::string("relu"));
  sc.activation = activation_from_name(act);
  if (!sc.activation || act == "gelu_accurate" || act == "gelu_fast")
    throw Error("activation_function '" + act + "' is not supported (relu, gelu, gelu_new)", file);
  sc.enable_bias = flag("enable_bias", true);
  sc.ln_affine = flag("layer_norm_elementwise_affine", true);
  sc.pre_ln = flag("do_layer_norm_before", true);
  sc.remove_final_norm = *sc.pre_ln && flag("_remove_final_layer_norm", false);
  sc.pad_token_id = integer("pad_token_id").value_or(1);
  sc.bos_token_id = integer("bos_token_id").value_or(2);
  sc.eos_token_id = integer("eos_token_id").value_or(2);
  sc.layers = integer("num_hidden_layers");
  sc.embed_dim = integer("hidden_size");
  sc.ffn_dim = integer("ffn_dim");
  sc.vocab = integer("vocab_size");
  sc.input_dim = integer("word_embed_proj_dim");
  sc.max_positions = integer("max_position_embeddings");
  return sc;
}

// A safetensors header naming a quantization scheme names ours (tensor/quantize.h); the tensors
// themselves are checked by take_scale.
void check_quantization_metadata(const AnyFile& f, const std::string& path) {
  for (const auto& [key, text] : f.metadata)
    if (key == kQuantizationKey && text != kInt8Scheme && text != kInt4Scheme)
      throw Error("__metadata__ " + key + " is '" + text + "', expected '" + kInt8Scheme + "' or '" + kInt4Scheme + "'",
                  path);
}

std::vector<std::string> hf_weight_files(const fs::path& dir) {
  std::vector<std::string> files;
  for (const char* index : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    if (!fs::exists(dir / index)) continue;
    return index_files(dir / index);
  }
  for (const char* single : {"model.safetensors", "pytorch_model.bin"})
    if (fs::exists(dir / single)) return {single};
  throw Error("HF folder has config.json but no weights (model.safetensors, pytorch_model.bin or an index)",
              dir.string());
}

// --heads against what the input records: they agree, or the option fills what is absent;
// never one silently over the other. (read_opt_model has refused a negative one.)
void apply_heads_option(SourceConfig& sc, int64_t heads, const std::string& source) {
  if (heads == 0) return;
  if (sc.heads && *sc.heads != heads)
    throw Error("--heads " + std::to_string(heads) + " disagrees with the checkpoint's config (" +
                    std::to_string(*sc.heads) + " attention heads)",
                source);
  sc.heads = heads;
}

OptTensors read_hf_folder(const fs::path& dir, const ReadModelOptions& opts) {
  const std::string src = dir.string();
  const std::string cfg_path = (dir / "config.json").string();
  SourceConfig sc = hf_source_config_from(read_json_object(cfg_path), cfg_path);
  apply_heads_option(sc, opts.heads, cfg_path);
  std::vector<std::pair<std::string, Tensor>> sd;
  for (const auto& f : hf_weight_files(dir)) {
    std::error_code ec;  // e.g. a name longer than the file system allows
    if (!fs::exists(dir / f, ec))
      throw Error(ec ? "cannot access the weights file the index names: " + ec.message()
                     : "weights file listed in the index is missing",
                  (dir / f).string());
    const AnyFile file = open_any((dir / f).string());
    check_quantization_metadata(file, (dir / f).string());
    auto part = state_dict(file);
    sd.insert(sd.end(), part.begin(), part.end());
  }
  OptTensors m = opt_model_from_named(std::move(sd), sc, src, opts.heads_may_be_unknown);
  m.layout = "Hugging Face folder";
  return m;
}

OptTensors read_alpa_folder(const fs::path& dir, const ReadModelOptions& opts) {
  std::vector<std::pair<std::string, Tensor>> named;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string n = e.path().filename().string();
    if (n.rfind("decoder.", 0) != 0) continue;
    if (!parse_any_role_name(n)) throw Error("unknown tensor file in an alpa folder", e.path().string());
    named.emplace_back(n, load_npy(e.path().string()));
  }
  SourceConfig sc;  // alpa's files carry no config
  apply_heads_option(sc, opts.heads, dir.string());
  OptTensors m = opt_model_from_named(std::move(named), sc, dir.string(), opts.heads_may_be_unknown);
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
  const auto fields = ckpt::read_cfg_fields(root);
  SourceConfig sc = fields ? metaseq_source_config(*fields, path) : SourceConfig{};
  apply_heads_option(sc, opts.heads, path);
  OptTensors m = opt_model_from_named(std::move(named), sc, path, opts.heads_may_be_unknown);
  m.metaseq_root = root;
  m.layout = "sharded metaseq checkpoint (" + std::to_string(plan->input->files.parts()) + " MP parts x " +
             std::to_string(plan->input->files.shards()) + " FSDP shards, consolidated on the fly)";
  m.keep_alive = plan;
  return m;
}

namespace {

// A single file: a metaseq singleton, or a state dict (HF names or metaseq names). Its config:
// a metaseq cfg in the file, else optforge's own __metadata__ opt_config (safetensors it
// wrote), else a config.json beside it (the file is then an HF folder's weights). That
// config.json must be an OPT config: invalid JSON or another model_type is an error, never a
// file silently passed over.
OptTensors read_single_file(const std::string& path, const AnyFile& f, const ReadModelOptions& opts) {
  const fs::path p(path);
  SourceConfig sc;
  bool have_config = false;
  if (const auto fields = ckpt::read_cfg_fields(f.root)) {
    sc = metaseq_source_config(*fields, path);
    have_config = true;
  }
  check_quantization_metadata(f, path);
  for (const auto& [key, text] : f.metadata) {
    if (key == "opt_config") {  // written by write_safetensors_state: an HF config.json
      const std::string where = path + " (__metadata__ opt_config)";
      sc = hf_source_config_from(parse_json_object(text, where), where);
      have_config = true;
    }
  }
  const fs::path sibling_config = p.parent_path() / "config.json";
  if (!have_config && fs::exists(sibling_config))
    sc = hf_source_config_from(read_json_object(sibling_config.string()), sibling_config.string());
  apply_heads_option(sc, opts.heads, path);
  OptTensors m = opt_model_from_named(state_dict(f), sc, path, opts.heads_may_be_unknown);
  if (f.root->get("model")) {
    m.metaseq_root = f.root;
    m.layout = "metaseq singleton";
  } else {
    m.layout = std::string(file_format_name(f.format)) + " state dict";
  }
  return m;
}

}  // namespace

OptTensors read_opt_model(const std::string& path, const ReadModelOptions& opts) {
  if (opts.heads < 0) throw Error("--heads " + std::to_string(opts.heads) + " is not a head count", path);
  fs::path p(path);
  if (fs::is_directory(p)) {
    if (fs::exists(p / "config.json")) return read_hf_folder(p, opts);
    if (fs::exists(p / role_name(role_spec(Role::TokenEmbed), Layout::AlpaFile))) return read_alpa_folder(p, opts);
    return read_sharded_metaseq(path, opts);  // or a clear error naming what was expected
  }
  if (!fs::exists(p)) return read_sharded_metaseq(path, opts);  // a prefix: DIR/checkpoint_last
  AnyFile f = open_any(path);
  std::string layout = describe_layout(f);
  if (layout.find("flat") != std::string::npos || f.root->get("shard_metadata"))
    return read_sharded_metaseq(path, opts);  // one file of a sharded set (or a flat reshard.pt)
  return read_single_file(path, f, opts);
}

}  // namespace optforge
