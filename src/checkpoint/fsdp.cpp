#include "checkpoint/fsdp.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "opt/roles.h"
#include "util/error.h"

namespace optforge::ckpt {
namespace {

using Kind = Value::Kind;

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// "flat_param", "flat_param_3", "decoder.layers.0.flat_param_0": FSDP's flat parameter names.
bool is_flat_key(const std::string& key) {
  const auto dot = key.rfind('.');
  const std::string last = dot == std::string::npos ? key : key.substr(dot + 1);
  if (last == "flat_param") return true;
  if (last.rfind("flat_param_", 0) != 0 || last.size() == 11) return false;
  return std::all_of(last.begin() + 11, last.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// The model dict's tensors under clean names, in file order.
std::vector<std::pair<std::string, Tensor>> model_tensors(const TorchFile& f) {
  std::vector<std::pair<std::string, Tensor>> out;
  ValuePtr m = f.root->get("model");
  std::set<std::string> seen;
  for (const auto& [k, v] : m->entries) {
    if (!k->is_str()) throw Error("model dict has a non-string key", f.path);
    if (!v->is_tensor()) continue;  // metaseq models hold tensors only; anything else is not ours to move
    std::string name = clean_fsdp_name(k->s);
    if (!seen.insert(name).second)
      throw Error("model holds '" + name + "' twice (after removing FSDP wrapper names)", f.path);
    out.emplace_back(name, *v->tensor);
  }
  return out;
}

const Tensor* find_tensor(const std::vector<std::pair<std::string, Tensor>>& ts, const std::string& name) {
  for (const auto& [n, t] : ts)
    if (n == name) return &t;
  return nullptr;
}

Shape parse_shape(const ValuePtr& v, const std::string& file, const std::string& where) {
  if (!v || !v->is_sequence()) throw Error("shard_metadata shape is not a tuple", file, where);
  Shape s;
  for (const auto& d : v->items) {
    if (d->kind != Kind::Int || d->i < 0) throw Error("shard_metadata shape holds a non-integer", file, where);
    s.push_back(d->i);
  }
  return s;
}

std::vector<std::string> parse_names(const ValuePtr& v, const std::string& file, const std::string& where) {
  if (!v || !v->is_sequence()) throw Error("shard_metadata 'names' is not a list", file, where);
  std::vector<std::string> out;
  for (const auto& x : v->items) {
    if (!x->is_str()) throw Error("shard_metadata name is not a string", file, where);
    out.push_back(clean_fsdp_name(x->s));
  }
  return out;
}

// shard_metadata's param_metadata list -> flat layouts (+ paddings of this rank).
std::vector<FlatLayout> layouts_from_metadata(const ValuePtr& md, const std::string& file,
                                              std::vector<int64_t>* paddings) {
  ValuePtr pm = md ? md->get("param_metadata") : nullptr;
  if (!pm || !pm->is_sequence()) throw Error("shard_metadata has no param_metadata list", file);
  std::vector<FlatLayout> out;
  for (const auto& inst : pm->items) {
    if (!inst->is_dict()) throw Error("shard_metadata param_metadata entry is not a dict", file);
    auto path = inst->get("fsdp_path");
    auto params = inst->get("params");
    if (!path || !path->is_str() || !params || !params->is_dict())
      throw Error("shard_metadata entry lacks fsdp_path/params", file);
    bool first = true;
    for (const auto& [fk, info] : params->entries) {
      if (!fk->is_str() || !info->is_dict()) throw Error("shard_metadata params entry is malformed", file);
      FlatLayout fl;
      fl.fsdp_path = clean_fsdp_name(path->s);
      fl.flat_name = fk->s;
      const std::string where = "shard_metadata '" + fl.key() + "'";
      fl.names = parse_names(info->get("names"), file, where);
      auto shapes = info->get("shapes");
      auto numels = info->get("numels");
      if (!shapes || !shapes->is_sequence() || shapes->items.size() != fl.names.size())
        throw Error("'shapes' does not match 'names'", file, where);
      for (size_t i = 0; i < fl.names.size(); ++i) {
        fl.shapes.push_back(parse_shape(shapes->items[i], file, where));
        if (numels && numels->is_sequence() && i < numels->items.size() &&
            (numels->items[i]->kind != Kind::Int || uint64_t(numels->items[i]->i) != numel_of(fl.shapes.back())))
          throw Error("numel of '" + fl.names[i] + "' does not match its shape " + shape_str(fl.shapes.back()), file,
                      where);
      }
      auto pad = info->get("padding");
      if (paddings) paddings->push_back(pad && pad->kind == Kind::Int ? pad->i : 0);
      if (first) {
        auto nb = inst->get("no_broadcast_optim_state");
        fl.no_broadcast_optim_state = nb && nb->kind == Kind::Bool && nb->b;
        fl.shared_param_info = inst->get("shared_param_info");
      }
      first = false;
      out.push_back(std::move(fl));
    }
  }
  return out;
}

bool same_layout(const FlatLayout& a, const FlatLayout& b) {
  return a.fsdp_path == b.fsdp_path && a.flat_name == b.flat_name && a.names == b.names && a.shapes == b.shapes;
}

bool metadata_usable(const TorchFile& f) {
  ValuePtr md = f.root->get("shard_metadata");
  if (!md || !md->is_dict()) return false;
  ValuePtr pm = md->get("param_metadata");
  return pm && pm->is_sequence() && !pm->items.empty();
}

PartTensor part_tensor(std::string name, const Tensor& t, const TorchFile& f) {
  return {std::move(name), t.shape, t.dtype, tensor_bytes(t, f.file), f.path};
}

// The params of a flat parameter: slices of its unpadded bytes.
void split_flat(const FlatLayout& fl, DType dtype, const ProducerPtr& flat, const std::string& origin,
                std::vector<PartTensor>& out) {
  uint64_t off = 0;
  const uint64_t es = dtype_size(dtype);
  for (size_t i = 0; i < fl.names.size(); ++i) {
    uint64_t n = numel_of(fl.shapes[i]) * es;
    out.push_back({fl.full_name(i), fl.shapes[i], dtype, slice(flat, off, n), origin});
    off += n;
  }
}

bool same_scalar(const ValuePtr& a, const ValuePtr& b) {
  if (a->kind != b->kind) return false;
  switch (a->kind) {
    case Kind::Int: return a->i == b->i;
    case Kind::Float: return a->f == b->f;
    case Kind::Bool: return a->b == b->b;
    case Kind::Str: return a->s == b->s;
    case Kind::None: return true;
    case Kind::Tensor: {
      const Tensor &x = *a->tensor, &y = *b->tensor;
      if (x.dtype != y.dtype || x.shape != y.shape) return false;
      Tensor cx = x.contiguous(), cy = y.contiguous();
      return std::memcmp(cx.data(), cy.data(), size_t(cx.nbytes())) == 0;
    }
    default: return true;  // containers: not compared
  }
}

}  // namespace

ShardSpan fsdp_shard(uint64_t n, int64_t world, int64_t rank) {
  if (world <= 1) return {0, n, 0};
  const uint64_t c = (n + uint64_t(world) - 1) / uint64_t(world);
  const uint64_t start = uint64_t(rank) * c;
  const uint64_t len = start >= n ? 0 : std::min(c, n - start);
  return {std::min(start, n), len, c - len};
}

uint64_t FlatLayout::numel() const {
  uint64_t n = 0;
  for (const auto& s : shapes) n += numel_of(s);
  return n;
}

uint64_t PartTensor::numel() const { return numel_of(shape); }

const PartTensor* PartModel::find(const std::string& name) const {
  for (const auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<FlatLayout> layout_from_cfg(const MetaseqCfg& d, int64_t P, int64_t vocab_rows) {
  OptConfig c = d.config;
  c.vocab = vocab_rows * P;
  auto instance = [&](Scope scope, std::string path, int64_t layer) {
    FlatLayout fl;
    fl.fsdp_path = std::move(path);
    for (const RoleSpec* r : fsdp_roles(scope, c, d.fused_qkv)) {
      const std::string full = role_name(*r, Layout::Metaseq, layer);
      fl.names.push_back(fl.fsdp_path.empty() ? full : full.substr(fl.fsdp_path.size() + 1));
      fl.shapes.push_back(role_shape(*r, c, P));
    }
    fl.shared_param_info = Value::list();
    return fl;
  };
  std::vector<FlatLayout> out = {instance(Scope::Model, "", -1)};
  out[0].shared_param_info =
      Value::list({Value::tuple({Value::str(role_name(role_spec(Role::TokenEmbed), Layout::Metaseq)),
                                 Value::str(role_name(role_spec(Role::LmHead), Layout::Metaseq))})});
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string prefix = layer_prefix(Layout::Metaseq, l);
    out.push_back(instance(Scope::Layer, prefix.substr(0, prefix.size() - 1), l));
  }
  return out;
}

namespace {

struct RankPiece {
  const Tensor* t;
  uint64_t pad;
  size_t rank;
};
using Named = std::vector<std::pair<std::string, Tensor>>;

// One model part being read: its files, their model tensors, and what has been claimed.
struct PartFiles {
  const LoadedCheckpoint& ck;
  size_t part;
  const std::vector<std::shared_ptr<TorchFile>>& files;
  std::vector<Named> tensors;                  // per rank
  std::set<std::string> used;                  // model keys consumed as params or buffers
  std::vector<std::vector<RankPiece>> pieces;  // flat inputs: per flat layout, per rank
  const TorchFile& f0() const { return *files[0]; }
  std::string where() const {
    return ck.files.dir + "/" + ck.files.prefix + " (model part " + std::to_string(part) + ")";
  }
};

std::vector<FlatLayout> same_layouts_everywhere(const PartFiles& in, std::vector<std::vector<int64_t>>& pads) {
  const size_t W = in.files.size();
  std::vector<std::vector<FlatLayout>> per_rank(W);
  pads.assign(W, {});
  for (size_t r = 0; r < W; ++r)
    per_rank[r] = layouts_from_metadata(in.files[r]->root->get("shard_metadata"), in.files[r]->path, &pads[r]);
  for (size_t r = 1; r < W; ++r) {
    if (per_rank[r].size() != per_rank[0].size())
      throw Error("shard_metadata lists " + std::to_string(per_rank[r].size()) + " flat parameters, shard 0's lists " +
                      std::to_string(per_rank[0].size()) + " (a shard from another run?)",
                  in.files[r]->path);
    for (size_t i = 0; i < per_rank[0].size(); ++i)
      if (!same_layout(per_rank[r][i], per_rank[0][i]))
        throw Error(
            "shard_metadata of '" + per_rank[0][i].key() + "' differs from shard 0's (a shard from another run?)",
            in.files[r]->path);
  }
  return per_rank[0];
}

// Every rank's piece of flat parameter `i`, checked against shard 0's and against the numels.
std::vector<RankPiece> rank_pieces(const PartFiles& in, const FlatLayout& fl, size_t i,
                                   const std::vector<std::vector<int64_t>>& pads) {
  const std::string key = fl.key();
  std::vector<RankPiece> ps;
  uint64_t stored = 0, real = 0;
  DType dtype{};
  for (size_t r = 0; r < in.files.size(); ++r) {
    const std::string& path = in.files[r]->path;
    const Tensor* t = find_tensor(in.tensors[r], key);
    if (!t) throw Error("no tensor '" + key + "' although shard_metadata lists it", path, "model");
    if (t->dim() != 1)
      throw Error("flat parameter '" + key + "' has shape " + t->shape_string() + ", expected 1-D", path);
    if (r == 0) {
      stored = uint64_t(t->numel());
      dtype = t->dtype;
    } else if (uint64_t(t->numel()) != stored || t->dtype != dtype) {
      throw Error("flat parameter '" + key + "' holds " + std::to_string(t->numel()) + " x " +
                      std::string(dtype_name(t->dtype)) + " but shard 0 holds " + std::to_string(stored) + " x " +
                      std::string(dtype_name(dtype)) + " (a shard from another run or another FSDP size?)",
                  path);
    }
    const int64_t pad = pads[r][i];
    if (pad < 0 || uint64_t(pad) > stored)
      throw Error(
          "padding " + std::to_string(pad) + " of '" + key + "' exceeds its " + std::to_string(stored) + " elements",
          path, "shard_metadata");
    ps.push_back({t, uint64_t(pad), r});
    real += stored - uint64_t(pad);
    if (fl.no_broadcast_optim_state) break;  // fairscale: rank 0 holds the whole parameter
  }
  if (real != fl.numel())
    throw Error("flat parameter '" + key + "': the shards hold " + std::to_string(real) +
                    " elements after removing each rank's padding, but shard_metadata's numels sum to " +
                    std::to_string(fl.numel()),
                in.where());
  return ps;
}

// Raw trainer shards: the layout from shard_metadata, each rank's padding removed.
void read_flat_with_metadata(PartFiles& in, PartModel& pm) {
  pm.form = "FSDP shards with shard_metadata";
  std::vector<std::vector<int64_t>> pads;
  pm.layout = same_layouts_everywhere(in, pads);
  for (size_t i = 0; i < pm.layout.size(); ++i) {
    in.used.insert(pm.layout[i].key());
    in.pieces.push_back(rank_pieces(in, pm.layout[i], i, pads));
  }
  ValuePtr bn = in.f0().root->get("shard_metadata")->get("buffer_names");
  if (!bn || !bn->is_sequence()) return;
  for (const auto& b : bn->items) {
    if (!b->is_str()) continue;
    std::string name = clean_fsdp_name(b->s);
    const Tensor* t = find_tensor(in.tensors[0], name);
    if (!t) throw Error("no buffer '" + name + "' although shard_metadata lists it", in.f0().path, "model");
    pm.buffers.push_back(part_tensor(name, *t, in.f0()));
    in.used.insert(name);
  }
}

// A released flat file: the layout rebuilt from cfg, the vocabulary size from the root's size.
void read_flat_without_metadata(PartFiles& in, PartModel& pm, const MetaseqCfg& dims) {
  pm.form = "flat file without shard_metadata";
  const TorchFile& f0 = in.f0();
  if (in.files.size() != 1)
    throw Error(
        "flat FSDP shards without shard_metadata: cannot tell their padding; expected one (unsharded) file per part, "
        "found " +
            std::to_string(in.files.size()),
        in.files[1]->path);
  const Tensor* root = find_tensor(in.tensors[0], "flat_param_0");
  if (!root) throw Error("flat file without shard_metadata has no root 'flat_param_0'", f0.path, "model");
  const OptConfig& c = dims.config;
  const int64_t P = in.ck.files.parts();
  const int64_t rest = int64_t(layout_from_cfg(dims, P, 0)[0].numel());  // the root without embed_tokens
  const int64_t n = root->numel();
  if (n <= rest || (n - rest) % c.input_dim != 0)
    throw Error("root flat_param_0 holds " + std::to_string(n) +
                    " elements, which no vocabulary size fits with cfg's dimensions (E=" + std::to_string(c.embed_dim) +
                    ", input dim " + std::to_string(c.input_dim) + ", positions " + std::to_string(c.max_positions) +
                    ")",
                f0.path, "model.flat_param_0");
  pm.layout = layout_from_cfg(dims, P, (n - rest) / c.input_dim);
  for (const FlatLayout& fl : pm.layout) {
    const Tensor* t = find_tensor(in.tensors[0], fl.key());
    if (!t)
      throw Error("no tensor '" + fl.key() + "' (cfg says the model has " + std::to_string(c.layers) + " layers)",
                  f0.path, "model");
    if (uint64_t(t->numel()) != fl.numel() || t->dim() != 1)
      throw Error("'" + fl.key() + "' holds " + std::to_string(t->numel()) +
                      " elements but the layout rebuilt from cfg (" + std::to_string(fl.names.size()) +
                      " parameters) needs exactly " + std::to_string(fl.numel()),
                  f0.path, "model");
    in.used.insert(fl.key());
    in.pieces.push_back({{t, 0, 0}});
  }
  for (const auto& [name, t] : in.tensors[0])
    if (is_flat_key(name) && !in.used.count(name))
      throw Error("flat parameter '" + name + "' is not part of the layout rebuilt from cfg", f0.path, "model");
}

// No metadata or cfg layout fits: one flat group per layer plus the root, in file order.
std::vector<FlatLayout> group_by_layer(const std::vector<std::string>& names, const Named& tensors) {
  std::vector<FlatLayout> lay;
  std::map<std::string, size_t> idx;
  for (const auto& name : names) {
    const auto layer = layer_of(Layout::Metaseq, name);
    const std::string prefix = layer ? layer_prefix(Layout::Metaseq, *layer) : "";
    const std::string path = layer ? prefix.substr(0, prefix.size() - 1) : "";
    auto it = idx.find(path);
    if (it == idx.end()) {
      it = idx.emplace(path, lay.size()).first;
      FlatLayout fl;
      fl.fsdp_path = path;
      fl.shared_param_info = Value::list();
      lay.push_back(std::move(fl));
    }
    lay[it->second].names.push_back(name.substr(prefix.size()));
    lay[it->second].shapes.push_back(find_tensor(tensors, name)->shape);
  }
  std::stable_sort(lay.begin(), lay.end(), [](const FlatLayout& a, const FlatLayout& b) {
    return a.fsdp_path.empty() && !b.fsdp_path.empty();
  });
  return lay;
}

// The flat layout an unflattened part came from: its stale shard_metadata if it still fits, else
// the one cfg describes, else one group per layer.
std::vector<FlatLayout> unflattened_layout(const PartFiles& in, const std::vector<std::string>& names,
                                           const MetaseqCfg& dims) {
  const Named& ts = in.tensors[0];
  const std::set<std::string> name_set(names.begin(), names.end());
  auto covers = [&](const std::vector<FlatLayout>& lay) {
    std::set<std::string> s;
    for (const auto& fl : lay)
      for (size_t i = 0; i < fl.names.size(); ++i) {
        const Tensor* t = find_tensor(ts, fl.full_name(i));
        if (!t || t->shape != fl.shapes[i]) return false;
        s.insert(fl.full_name(i));
      }
    return !lay.empty() && s == name_set;
  };
  std::vector<FlatLayout> lay;
  if (metadata_usable(in.f0())) {
    try {
      lay = layouts_from_metadata(in.f0().root->get("shard_metadata"), in.f0().path, nullptr);
    } catch (const Error&) { lay.clear(); }
  }
  if (covers(lay)) return lay;
  const Tensor* emb = find_tensor(ts, role_name(role_spec(Role::TokenEmbed), Layout::Metaseq));
  if (emb && emb->dim() == 2) {
    MetaseqCfg d2 = dims;
    d2.fused_qkv =
        name_set.count(role_name(role_spec(Role::QkvWeight), Layout::MetaseqFused, 0)) > 0 || dims.config.layers == 0;
    lay = layout_from_cfg(d2, in.ck.files.parts(), emb->shape[0]);
    if (covers(lay)) return lay;
  }
  return group_by_layer(names, ts);
}

// An unflattened file (consolidated part): the tensors are the parameters.
void read_unflattened(PartFiles& in, PartModel& pm, const MetaseqCfg& dims) {
  pm.form = "unflattened file";
  const TorchFile& f0 = in.f0();
  if (in.files.size() != 1)
    throw Error("unflattened (consolidated) files: expected one per part, found " + std::to_string(in.files.size()),
                in.files[1]->path);
  std::set<std::string> buffers = {"decoder.version"};
  ValuePtr md = f0.root->get("shard_metadata");
  if (md && md->is_dict())
    if (auto bn = md->get("buffer_names"); bn && bn->is_sequence())
      for (const auto& b : bn->items)
        if (b->is_str()) buffers.insert(clean_fsdp_name(b->s));
  const std::string head = role_name(role_spec(Role::LmHead), Layout::Metaseq);
  std::vector<std::string> names;
  for (const auto& [name, t] : in.tensors[0]) {
    if (name == head) continue;  // tied to embed_tokens, not stored by FSDP
    if (buffers.count(name) || name.find("_float_tensor") != std::string::npos) continue;
    names.push_back(name);
  }
  pm.layout = unflattened_layout(in, names, dims);
  for (const FlatLayout& fl : pm.layout)
    for (size_t i = 0; i < fl.names.size(); ++i) {
      std::string name = fl.full_name(i);
      pm.params.push_back(part_tensor(name, *find_tensor(in.tensors[0], name), f0));
      in.used.insert(name);
    }
  for (const auto& [name, t] : in.tensors[0])
    if (buffers.count(name)) {
      pm.buffers.push_back(part_tensor(name, t, f0));
      in.used.insert(name);
    }
  in.used.insert(head);
  for (const auto& [name, t] : in.tensors[0])
    if (!in.used.count(name) && name.find("_float_tensor") != std::string::npos)
      pm.buffers.push_back(part_tensor(name, t, f0));
}

// Flat inputs: params are slices of each flat parameter's unpadded bytes.
void split_pieces(const PartFiles& in, PartModel& pm) {
  for (size_t i = 0; i < in.pieces.size(); ++i) {
    std::vector<ProducerPtr> ps;
    for (const RankPiece& p : in.pieces[i]) {
      const Tensor& t = *p.t;
      const uint64_t keep = (uint64_t(t.numel()) - p.pad) * dtype_size(t.dtype);
      ps.push_back(slice(tensor_bytes(t, in.files[p.rank]->file), 0, keep));
    }
    split_flat(pm.layout[i], in.pieces[i][0].t->dtype, concat(ps), in.ck.files.paths[in.part][0], pm.params);
  }
}

// Flat inputs: model entries nobody claimed are carried along as buffers, never dropped.
void carry_unclaimed(const PartFiles& in, PartModel& pm) {
  for (const auto& [name, t] : in.tensors[0])
    if (!in.used.count(name)) {
      if (is_flat_key(name))
        throw Error("flat parameter '" + name + "' is not described by shard_metadata", in.f0().path, "model");
      pm.buffers.push_back(part_tensor(name, t, in.f0()));
    }
  for (size_t r = 1; r < in.files.size(); ++r)
    for (const auto& [name, t] : in.tensors[r])
      if (!find_tensor(in.tensors[0], name))
        throw Error("model holds '" + name + "', which shard 0 does not (a shard from another run?)",
                    in.files[r]->path);
}

// last_optimizer_state['state'] of every rank, by flat parameter index.
struct OptimStates {
  const PartFiles& in;
  const PartModel& pm;
  std::vector<ValuePtr> states;  // per rank

  ValuePtr entry(size_t r, size_t k) const {
    for (const auto& [key, v] : states[r]->entries)
      if (key->kind == Kind::Int && uint64_t(key->i) == k) return v;
    throw Error(
        "last_optimizer_state has no state for flat parameter " + std::to_string(k) + " ('" + pm.layout[k].key() + "')",
        in.files[r]->path);
  }
};

// The keys of flat parameter k's state that hold one value per element (moments: exp_avg, ...);
// the others (step, ...) go to `scalars`, checked equal on every rank.
std::vector<std::string> moment_keys_of(const OptimStates& os, size_t k, const ValuePtr& scalars) {
  const PartFiles& in = os.in;
  ValuePtr e0 = os.entry(0, k);
  if (!e0->is_dict()) throw Error("optimizer state entry is not a dict", in.f0().path);
  const std::string flat = os.pm.layout[k].key();
  const uint64_t stored = uint64_t(in.pieces[k][0].t->numel());
  std::vector<std::string> keys;
  for (const auto& [key, v] : e0->entries) {
    if (!key->is_str()) continue;
    if (v->is_tensor() && v->tensor->dim() == 1 && uint64_t(v->tensor->numel()) == stored) {
      keys.push_back(key->s);
    } else if (v->is_tensor() && v->tensor->numel() > 1) {
      throw Error("optimizer state '" + key->s + "' of '" + flat + "' has " + std::to_string(v->tensor->numel()) +
                      " elements but the flat shard has " + std::to_string(stored),
                  in.f0().path);
    } else {
      scalars->set(key->s, v);
      for (size_t r = 1; r < in.files.size(); ++r) {
        ValuePtr er = os.entry(r, k);
        ValuePtr vr = er->is_dict() ? er->get(key->s) : nullptr;
        if (!vr || !same_scalar(v, vr))
          throw Error("optimizer state '" + key->s + "' of '" + flat + "' differs from shard 0's", in.files[r]->path);
      }
    }
  }
  return keys;
}

// Moment `key` of flat parameter k, every rank's padding removed.
ProducerPtr moment_flat(const OptimStates& os, size_t k, const std::string& key) {
  std::vector<ProducerPtr> ps;
  DType mdt{};
  for (const RankPiece& p : os.in.pieces[k]) {
    const TorchFile& f = *os.in.files[p.rank];
    ValuePtr er = os.entry(p.rank, k);
    ValuePtr v = er->is_dict() ? er->get(key) : nullptr;
    const uint64_t stored = uint64_t(p.t->numel());
    if (!v || !v->is_tensor() || v->tensor->dim() != 1 || uint64_t(v->tensor->numel()) != stored)
      throw Error("optimizer state '" + key + "' of '" + os.pm.layout[k].key() + "' does not match the flat shard's " +
                      std::to_string(stored) + " elements",
                  f.path);
    if (ps.empty())
      mdt = v->tensor->dtype;
    else if (v->tensor->dtype != mdt)
      throw Error("optimizer state '" + key + "' has different dtypes across shards", f.path);
    ps.push_back(slice(tensor_bytes(*v->tensor, f.file), 0, (stored - p.pad) * dtype_size(mdt)));
  }
  return concat(ps);
}

// Optimizer state: moments are padded like the flat shards; each rank's own padding is removed.
void read_optimizer(const PartFiles& in, PartModel& pm) {
  ValuePtr os0 = in.f0().root->get("last_optimizer_state");
  if (!os0 || in.pieces.empty()) return;
  pm.optim_root = os0;
  OptimStates os{in, pm, {}};
  for (const auto& f : in.files) {
    ValuePtr o = f->root->get("last_optimizer_state");
    ValuePtr st = o ? o->get("state") : nullptr;
    if (!st || !st->is_dict()) throw Error("no last_optimizer_state['state'] although shard 0 has one", f->path);
    os.states.push_back(st);
  }
  std::vector<std::string> keys;
  std::vector<std::vector<ProducerPtr>> flats;  // [key][flat]
  pm.optim_scalars.resize(in.pieces.size());
  for (size_t k = 0; k < in.pieces.size(); ++k) {
    pm.optim_scalars[k] = Value::dict();
    auto here = moment_keys_of(os, k, pm.optim_scalars[k]);
    if (k == 0) {
      keys = here;
      flats.resize(keys.size());
    } else if (here != keys) {
      throw Error("optimizer state of '" + pm.layout[k].key() + "' has other moments than the root's", in.f0().path);
    }
    for (size_t mk = 0; mk < keys.size(); ++mk) flats[mk].push_back(moment_flat(os, k, keys[mk]));
  }
  for (size_t mk = 0; mk < keys.size(); ++mk) {
    std::vector<PartTensor> ts;
    for (size_t k = 0; k < in.pieces.size(); ++k)
      split_flat(pm.layout[k], os.entry(0, k)->get(keys[mk])->tensor->dtype, flats[mk][k],
                 in.ck.files.paths[in.part][0], ts);
    pm.moments.emplace_back(keys[mk], std::move(ts));
  }
}

}  // namespace

PartModel read_part(const LoadedCheckpoint& ck, size_t part, const MetaseqCfg& dims, bool optimizer) {
  PartFiles in{ck, part, ck.shards.at(part), {}, {}, {}};
  for (const auto& f : in.files) in.tensors.push_back(model_tensors(*f));
  bool has_flat = false, all_md = true;
  for (const auto& [n, t] : in.tensors[0]) has_flat |= is_flat_key(n);
  for (const auto& f : in.files) all_md &= metadata_usable(*f);
  PartModel pm;
  if (!has_flat) {
    read_unflattened(in, pm, dims);
    return pm;
  }
  if (all_md)
    read_flat_with_metadata(in, pm);
  else
    read_flat_without_metadata(in, pm, dims);
  split_pieces(in, pm);
  carry_unclaimed(in, pm);
  if (optimizer) read_optimizer(in, pm);
  return pm;
}

}  // namespace optforge::ckpt
