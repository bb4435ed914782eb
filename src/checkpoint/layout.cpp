#include "checkpoint/layout.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "util/error.h"
#include "util/parallel_for.h"
#include "util/pattern.h"

namespace optforge::ckpt {
namespace fs = std::filesystem;

std::optional<ParsedName> parse_checkpoint_name(const std::string& name) {
  static const Pattern re(R"((.+?)(?:-model_part-(\d{1,9}))?(?:-shard(\d{1,9}))?\.pt)");
  auto m = re.full_match(name);
  if (!m) return std::nullopt;
  ParsedName p;
  p.prefix = *(*m)[0];
  if ((*m)[1]) p.part = std::stoll(*(*m)[1]);
  if ((*m)[2]) p.shard = std::stoll(*(*m)[2]);
  return p;
}

std::string clean_fsdp_name(const std::string& name) {
  if (name.find("_fsdp_wrapped_module") == std::string::npos && name.find("_fpw_module") == std::string::npos)
    return name;
  std::string out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    std::string comp = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (comp != "_fsdp_wrapped_module" && comp != "_fpw_module" && !comp.empty()) {
      if (!out.empty()) out += '.';
      out += comp;
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

namespace {

// Files of one checkpoint name prefix: part -> shard -> paths (more than one: a duplicate).
struct Found {
  std::map<int64_t, std::map<int64_t, std::vector<std::string>>> parts;
  bool part_suffix = false, no_part_suffix = false, shard_suffix = false, no_shard_suffix = false;
};

// `in` as (folder, wanted prefix or "" for any): a folder, a prefix, or one file of a set.
std::pair<std::string, std::string> folder_and_prefix(const std::string& in) {
  std::error_code ec;
  if (fs::is_directory(in, ec)) return {in, ""};
  fs::path p(in);
  std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  std::string want = p.filename().string();
  if (want.size() > 3 && want.compare(want.size() - 3, 3, ".pt") == 0 && !fs::exists(in, ec))
    want.resize(want.size() - 3);
  if (fs::is_regular_file(in, ec)) {  // a single file: itself (a part or shard of a set, or alone)
    auto parsed = parse_checkpoint_name(want);
    if (parsed) want = parsed->prefix;
  }
  if (!fs::is_directory(dir, ec)) throw Error("no such folder", dir);
  return {dir, want};
}

std::map<std::string, Found> list_checkpoints(const std::string& dir, const std::string& want_prefix) {
  std::error_code ec;
  std::map<std::string, Found> groups;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    auto p = parse_checkpoint_name(e.path().filename().string());
    if (!p) continue;
    if (!want_prefix.empty() && p->prefix != want_prefix) continue;
    Found& g = groups[p->prefix];
    (p->part ? g.part_suffix : g.no_part_suffix) = true;
    (p->shard ? g.shard_suffix : g.no_shard_suffix) = true;
    g.parts[p->part.value_or(0)][p->shard.value_or(0)].push_back(e.path().string());
  }
  if (ec) throw Error("cannot list: " + ec.message(), dir);
  if (groups.empty())
    throw Error(want_prefix.empty() ? "no checkpoint files (*.pt) in this folder"
                                    : "no checkpoint files named " + want_prefix + "[-model_part-K][-shardR].pt",
                dir);
  return groups;
}

std::string choose_prefix(const std::map<std::string, Found>& groups, const std::string& dir) {
  if (groups.size() == 1) return groups.begin()->first;
  for (const char* preferred : {"checkpoint_last", "reshard"})
    if (groups.count(preferred)) return preferred;
  std::string names;
  for (const auto& [k, g] : groups) names += (names.empty() ? "" : ", ") + k;
  throw Error("several checkpoints in this folder (" + names + "); pass a path prefix such as " + dir + "/" +
                  groups.begin()->first,
              dir);
}

// Part `part`'s shard paths, checked to be 0..n-1 without gaps or duplicates.
std::vector<std::string> shard_paths(const Found& g, int64_t part, const std::string& dir, const std::string& prefix) {
  const auto& shards = g.parts.at(part);
  std::vector<std::string> paths;
  int64_t expect_shard = 0;
  for (const auto& [shard, files] : shards) {
    if (files.size() > 1)
      throw Error("duplicate shard " + std::to_string(shard) + ": " + files[0] + " and " + files[1], dir);
    if (shard != expect_shard)
      throw Error("shard " + std::to_string(expect_shard) + " of model part " + std::to_string(part) +
                      " is missing (found shards up to " + std::to_string(shards.rbegin()->first) + ")",
                  dir + "/" + prefix + (g.part_suffix ? "-model_part-" + std::to_string(part) : "") + "-shard" +
                      std::to_string(expect_shard) + ".pt");
    paths.push_back(files[0]);
    ++expect_shard;
  }
  return paths;
}

}  // namespace

CheckpointFiles find_checkpoint(const std::string& in) {
  const auto [dir, want_prefix] = folder_and_prefix(in);
  const auto groups = list_checkpoints(dir, want_prefix);
  const std::string prefix = choose_prefix(groups, dir);
  const Found& g = groups.at(prefix);
  if (g.part_suffix && g.no_part_suffix)
    throw Error("files of '" + prefix + "' mix names with and without -model_part-K", dir);
  if (g.shard_suffix && g.no_shard_suffix)
    throw Error("files of '" + prefix + "' mix names with and without -shardR", dir);
  CheckpointFiles out;
  out.dir = dir;
  out.prefix = prefix;
  out.part_suffix = g.part_suffix;
  out.shard_suffix = g.shard_suffix;
  int64_t expect_part = 0;
  for (const auto& [part, shards] : g.parts) {
    if (part != expect_part)
      throw Error("model part " + std::to_string(expect_part) + " is missing (found parts up to " +
                      std::to_string(g.parts.rbegin()->first) + ")",
                  dir + "/" + prefix + "-model_part-" + std::to_string(expect_part) + "-shard*.pt");
    std::vector<std::string> paths = shard_paths(g, part, dir, prefix);
    if (!out.paths.empty() && paths.size() != out.paths[0].size())
      throw Error("model part " + std::to_string(part) + " has " + std::to_string(paths.size()) +
                      " shards but part 0 has " + std::to_string(out.paths[0].size()) + " (a shard is missing?)",
                  dir);
    out.paths.push_back(std::move(paths));
    ++expect_part;
  }
  return out;
}

namespace {

std::optional<int64_t> int_field(const ValuePtr& v, const std::string& key) {
  if (!v) return std::nullopt;
  auto x = v->attr(key);
  if (x && x->kind == Value::Kind::Int) return x->i;
  if (x && x->kind == Value::Kind::Bool) return int64_t(x->b);
  return std::nullopt;
}

std::optional<bool> bool_field(const ValuePtr& v, const std::string& key) {
  if (!v) return std::nullopt;
  auto x = v->attr(key);
  if (x && x->kind == Value::Kind::Bool) return x->b;
  if (x && x->kind == Value::Kind::Int) return x->i != 0;
  return std::nullopt;
}

// Fields of cfg['model'] that legitimately differ between the ranks of one save.
const std::set<std::string>& per_rank_fields() {
  static const std::set<std::string> s = {
      "distributed_rank",        "device_id",        "local_rank",           "checkpoint_suffix",
      "distributed_init_method", "distributed_port", "distributed_num_procs"};
  return s;
}

bool same_value(const ValuePtr& a, const ValuePtr& b, int depth = 0) {
  if (!a || !b) return !a && !b;
  if (depth > 64) return true;
  if (a->kind != b->kind) return false;
  switch (a->kind) {
    case Value::Kind::None: return true;
    case Value::Kind::Bool: return a->b == b->b;
    case Value::Kind::Int: return a->i == b->i;
    case Value::Kind::Float: return a->f == b->f || (a->f != a->f && b->f != b->f);
    case Value::Kind::Str:
    case Value::Kind::Bytes:
    case Value::Kind::Global: return a->s == b->s;
    case Value::Kind::List:
    case Value::Kind::Tuple:
    case Value::Kind::Set:
      if (a->items.size() != b->items.size()) return false;
      for (size_t i = 0; i < a->items.size(); ++i)
        if (!same_value(a->items[i], b->items[i], depth + 1)) return false;
      return true;
    case Value::Kind::Dict: {
      auto skip = [](const ValuePtr& k) { return k->is_str() && per_rank_fields().count(k->s); };
      std::vector<std::pair<ValuePtr, ValuePtr>> ea, eb;
      for (const auto& e : a->entries)
        if (!skip(e.first)) ea.push_back(e);
      for (const auto& e : b->entries)
        if (!skip(e.first)) eb.push_back(e);
      if (ea.size() != eb.size()) return false;
      for (size_t i = 0; i < ea.size(); ++i)
        if (!same_value(ea[i].first, eb[i].first, depth + 1) || !same_value(ea[i].second, eb[i].second, depth + 1))
          return false;
      return true;
    }
    case Value::Kind::Object: return a->s == b->s && same_value(a->state, b->state, depth + 1);
    case Value::Kind::Tensor: return a->tensor->shape == b->tensor->shape && a->tensor->dtype == b->tensor->dtype;
  }
  return false;
}

std::optional<int64_t> num_updates(const TorchFile& f) {
  auto h = f.root->get("optimizer_history");
  if (!h || h->kind != Value::Kind::List || h->items.empty()) return std::nullopt;
  return int_field(h->items.back(), "num_updates");
}

}  // namespace

std::optional<CfgFields> read_cfg_fields(const ValuePtr& root) {
  if (!root || !root->is_dict()) return std::nullopt;
  ValuePtr cfg = root->get("cfg");
  ValuePtr m = cfg ? cfg->attr("model") : nullptr;
  if (!m || (m->kind != Value::Kind::Object && !m->is_dict())) m = cfg;  // a flat cfg
  if (!m) m = root->get("args");                                         // very old files
  if (!m) return std::nullopt;
  CfgFields f;
  f.decoder_layers = int_field(m, "decoder_layers");
  f.decoder_embed_dim = int_field(m, "decoder_embed_dim");
  f.decoder_attention_heads = int_field(m, "decoder_attention_heads");
  f.decoder_ffn_embed_dim = int_field(m, "decoder_ffn_embed_dim");
  f.decoder_input_dim = int_field(m, "decoder_input_dim");
  f.max_target_positions = int_field(m, "max_target_positions");
  f.tokens_per_sample = int_field(m, "tokens_per_sample");
  f.decoder_normalize_before = bool_field(m, "decoder_normalize_before");
  f.no_decoder_final_norm = bool_field(m, "no_decoder_final_norm");
  if (auto a = m->attr("activation_fn"); a && a->is_str()) f.activation_fn = a->s;
  auto real = [&](const char* key) -> std::optional<double> {
    auto v = m->attr(key);
    if (v && v->kind == Value::Kind::Float) return v->f;
    return std::nullopt;
  };
  f.dropout = real("dropout");
  f.attention_dropout = real("attention_dropout");
  auto arch = m->attr("arch");
  if (!arch || !arch->is_str()) arch = m->attr("_name");
  f.arch = arch && arch->is_str() ? arch->s : "";
  f.model_parallel_size = int_field(m, "model_parallel_size");
  if (!f.model_parallel_size && cfg) f.model_parallel_size = int_field(cfg->attr("common"), "model_parallel_size");
  if (cfg) f.distributed_world_size = int_field(cfg->attr("distributed_training"), "distributed_world_size");
  if (!f.distributed_world_size) f.distributed_world_size = int_field(m, "distributed_world_size");
  return f;
}

MetaseqCfg dims_from_cfg(const ValuePtr& root, const std::string& file) {
  const auto f = read_cfg_fields(root);
  if (!f) throw Error("no 'cfg' in the checkpoint: cannot tell the model's dimensions", file);
  MetaseqCfg d;
  OptConfig& c = d.config;
  auto need = [&](const std::optional<int64_t>& v, const char* k) {
    if (!v) throw Error(std::string("cfg['model'] has no '") + k + "'", file);
    return *v;
  };
  c.name = "custom";
  c.layers = need(f->decoder_layers, "decoder_layers");
  c.embed_dim = need(f->decoder_embed_dim, "decoder_embed_dim");
  c.heads = need(f->decoder_attention_heads, "decoder_attention_heads");
  c.ffn_dim = f->decoder_ffn_embed_dim.value_or(4 * c.embed_dim);
  c.input_dim = f->decoder_input_dim.value_or(c.embed_dim);
  auto t = f->max_target_positions ? f->max_target_positions : f->tokens_per_sample;
  if (!t) throw Error("cfg['model'] has neither max_target_positions nor tokens_per_sample", file);
  c.max_positions = *t;
  c.pre_ln = f->decoder_normalize_before.value_or(true);
  c.remove_final_norm = c.pre_ln && f->no_decoder_final_norm.value_or(false);
  d.arch = f->arch;
  d.fused_qkv = d.arch != "transformer_lm_gpt" && d.arch != "transformer_lm";
  d.model_parallel_size = f->model_parallel_size;
  d.world_size = f->distributed_world_size;
  return d;
}

LoadedCheckpoint load_checkpoint(const CheckpointFiles& files, int threads) {
  LoadedCheckpoint lc;
  lc.files = files;
  std::vector<std::pair<size_t, size_t>> all;
  lc.shards.resize(files.paths.size());
  for (size_t p = 0; p < files.paths.size(); ++p) {
    lc.shards[p].resize(files.paths[p].size());
    for (size_t r = 0; r < files.paths[p].size(); ++r) all.emplace_back(p, r);
  }
  parallel_for(all.size(), threads, [&](size_t i) {
    auto [p, r] = all[i];
    auto tf = std::make_shared<TorchFile>(load_torch_file(files.paths[p][r]));
    if (!tf->root || !tf->root->is_dict() || !tf->root->get("model") || !tf->root->get("model")->is_dict())
      throw Error("not a metaseq checkpoint: no 'model' dict at the top level", files.paths[p][r]);
    lc.shards[p][r] = std::move(tf);
  });
  // One save: the same model config and number of updates everywhere.
  const TorchFile& f0 = lc.first();
  ValuePtr cfg0 = f0.root->get("cfg");
  ValuePtr m0 = cfg0 ? cfg0->attr("model") : nullptr;
  auto upd0 = num_updates(f0);
  for (const auto& part : lc.shards)
    for (const auto& f : part) {
      if (f.get() == &f0) continue;
      ValuePtr cfg = f->root->get("cfg");
      ValuePtr m = cfg ? cfg->attr("model") : nullptr;
      if (!same_value(m0, m))
        throw Error("belongs to another run: its cfg['model'] differs from that of " + f0.path, f->path);
      if (num_updates(*f) != upd0)
        throw Error("belongs to another save: optimizer_history says " +
                        (num_updates(*f) ? std::to_string(*num_updates(*f)) : std::string("nothing")) + " updates, " +
                        f0.path + " says " + (upd0 ? std::to_string(*upd0) : std::string("nothing")),
                    f->path);
    }
  if (cfg0) {
    MetaseqCfg d = dims_from_cfg(f0.root, f0.path);
    const int64_t P = files.parts(), W = files.shards();
    if (d.model_parallel_size && *d.model_parallel_size != P && !(P == 1 && !files.part_suffix))
      throw Error("found " + std::to_string(P) + " model part(s) but cfg says model_parallel_size = " +
                      std::to_string(*d.model_parallel_size) + " (a part is missing?)",
                  files.dir + "/" + files.prefix);
    // Raw trainer shards: every rank wrote one file, so parts x shards = world size.
    const bool raw = files.shard_suffix && f0.root->get("shard_metadata");
    if (raw && d.world_size && *d.world_size != P * W)
      throw Error("found " + std::to_string(W) + " shard(s) per part x " + std::to_string(P) +
                      " part(s) but the run had distributed_world_size = " + std::to_string(*d.world_size) +
                      " (a shard is missing?)",
                  files.dir + "/" + files.prefix);
  }
  return lc;
}

}  // namespace optforge::ckpt
