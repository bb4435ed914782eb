#include "checkpoint/fsdp.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>
#include <set>

#include "util/error.h"

namespace optforge::ckpt {
namespace {

using Kind = Value::Kind;


std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

bool is_flat_key(const std::string& key) {
  static const std::regex re(R"((^|\.)flat_param(_\d+)?$)");
  return std::regex_search(key, re);
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
    if (!seen.insert(name).second) throw Error("model holds '" + name + "' twice (after removing FSDP wrapper names)", f.path);
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
          throw Error("numel of '" + fl.names[i] + "' does not match its shape " + shape_str(fl.shapes.back()), file, where);
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

std::vector<FlatLayout> layout_from_cfg(const ModelDims& d, int64_t P, int64_t vocab_rows) {
  const int64_t E = d.embed_dim, F = d.ffn_dim, Ein = d.input_dim, T = d.positions;
  std::vector<FlatLayout> out;
  FlatLayout root;
  auto add = [](FlatLayout& fl, std::string n, Shape s) {
    fl.names.push_back(std::move(n));
    fl.shapes.push_back(std::move(s));
  };
  add(root, "decoder.embed_tokens.weight", {vocab_rows, Ein});
  if (Ein != E) add(root, "decoder.project_in_dim.weight", {E, Ein});
  add(root, "decoder.embed_positions.weight", {T + 2, E});
  if (d.pre_ln) {
    add(root, "decoder.layer_norm.weight", {E});
    add(root, "decoder.layer_norm.bias", {E});
  }
  if (Ein != E) add(root, "decoder.project_out_dim.weight", {Ein, E});
  root.shared_param_info = Value::list(
      {Value::tuple({Value::str("decoder.embed_tokens.weight"), Value::str("decoder.output_projection.weight")})});
  out.push_back(std::move(root));
  for (int64_t l = 0; l < d.layers; ++l) {
    FlatLayout fl;
    fl.fsdp_path = "decoder.layers." + std::to_string(l);
    if (d.fused_qkv) {
      add(fl, "self_attn.qkv_proj.weight", {3 * E / P, E});
      add(fl, "self_attn.qkv_proj.bias", {3 * E / P});
    } else {
      for (const char* x : {"k", "v", "q"}) {
        add(fl, std::string("self_attn.") + x + "_proj.weight", {E / P, E});
        add(fl, std::string("self_attn.") + x + "_proj.bias", {E / P});
      }
    }
    add(fl, "self_attn.out_proj.weight", {E, E / P});
    add(fl, "self_attn.out_proj.bias", {E});
    add(fl, "self_attn_layer_norm.weight", {E});
    add(fl, "self_attn_layer_norm.bias", {E});
    add(fl, "fc1.weight", {F / P, E});
    add(fl, "fc1.bias", {F / P});
    add(fl, "fc2.weight", {E, F / P});
    add(fl, "fc2.bias", {E});
    add(fl, "final_layer_norm.weight", {E});
    add(fl, "final_layer_norm.bias", {E});
    fl.shared_param_info = Value::list();
    out.push_back(std::move(fl));
  }
  return out;
}

PartModel read_part(const LoadedCheckpoint& ck, size_t part, const ModelDims& dims, bool optimizer) {
  const auto& files = ck.shards.at(part);
  const int64_t W = int64_t(files.size()), P = ck.files.parts();
  const TorchFile& f0 = *files[0];
  PartModel pm;
  std::vector<std::vector<std::pair<std::string, Tensor>>> tensors;
  for (const auto& f : files) tensors.push_back(model_tensors(*f));
  bool has_flat = false;
  for (const auto& [n, t] : tensors[0]) has_flat |= is_flat_key(n);
  bool all_md = true;
  for (const auto& f : files) all_md &= metadata_usable(*f);
  std::set<std::string> used;  // model keys consumed as params

  // Per flat layout: per rank (tensor, padding) when reading flat inputs.
  struct RankPiece {
    const Tensor* t;
    uint64_t pad;
    size_t rank;
  };
  std::vector<std::vector<RankPiece>> pieces;

  if (has_flat && all_md) {
    pm.form = "FSDP shards with shard_metadata";
    std::vector<std::vector<int64_t>> pads(W);
    std::vector<std::vector<FlatLayout>> per_rank(W);
    for (int64_t r = 0; r < W; ++r)
      per_rank[r] = layouts_from_metadata(files[r]->root->get("shard_metadata"), files[r]->path, &pads[r]);
    pm.layout = per_rank[0];
    for (int64_t r = 1; r < W; ++r) {
      if (per_rank[r].size() != pm.layout.size())
        throw Error("shard_metadata lists " + std::to_string(per_rank[r].size()) + " flat parameters, shard 0's lists " +
                        std::to_string(pm.layout.size()) + " (a shard from another run?)",
                    files[r]->path);
      for (size_t i = 0; i < pm.layout.size(); ++i)
        if (!same_layout(per_rank[r][i], pm.layout[i]))
          throw Error("shard_metadata of '" + pm.layout[i].key() + "' differs from shard 0's (a shard from another run?)",
                      files[r]->path);
    }
    for (size_t i = 0; i < pm.layout.size(); ++i) {
      const FlatLayout& fl = pm.layout[i];
      const std::string key = fl.key();
      used.insert(key);
      std::vector<RankPiece> ps;
      uint64_t stored = 0, real = 0;
      DType dtype{};
      for (int64_t r = 0; r < W; ++r) {
        const Tensor* t = find_tensor(tensors[r], key);
        if (!t) throw Error("no tensor '" + key + "' although shard_metadata lists it", files[r]->path, "model");
        if (t->dim() != 1) throw Error("flat parameter '" + key + "' has shape " + t->shape_string() + ", expected 1-D", files[r]->path);
        if (r == 0) {
          stored = uint64_t(t->numel());
          dtype = t->dtype;
        } else if (uint64_t(t->numel()) != stored || t->dtype != dtype) {
          throw Error("flat parameter '" + key + "' holds " + std::to_string(t->numel()) + " x " +
                          std::string(dtype_name(t->dtype)) + " but shard 0 holds " + std::to_string(stored) + " x " +
                          std::string(dtype_name(dtype)) + " (a shard from another run or another FSDP size?)",
                      files[r]->path);
        }
        const int64_t pad = pads[r][i];
        if (pad < 0 || uint64_t(pad) > stored)
          throw Error("padding " + std::to_string(pad) + " of '" + key + "' exceeds its " + std::to_string(stored) + " elements",
                      files[r]->path, "shard_metadata");
        ps.push_back({t, uint64_t(pad), size_t(r)});
        real += stored - uint64_t(pad);
        if (fl.no_broadcast_optim_state) break;  // fairscale: rank 0 holds the whole parameter
      }
      if (real != fl.numel())
        throw Error("flat parameter '" + key + "': the shards hold " + std::to_string(real) +
                        " elements after removing each rank's padding, but shard_metadata's numels sum to " +
                        std::to_string(fl.numel()),
                    ck.files.dir + "/" + ck.files.prefix + " (model part " + std::to_string(part) + ")");
      pieces.push_back(std::move(ps));
    }
    ValuePtr bn = f0.root->get("shard_metadata")->get("buffer_names");
    if (bn && bn->is_sequence())
      for (const auto& b : bn->items) {
        if (!b->is_str()) continue;
        std::string name = clean_fsdp_name(b->s);
        const Tensor* t = find_tensor(tensors[0], name);
        if (!t) throw Error("no buffer '" + name + "' although shard_metadata lists it", f0.path, "model");
        pm.buffers.push_back(part_tensor(name, *t, f0));
        used.insert(name);
      }
  } else if (has_flat) {
    pm.form = "flat file without shard_metadata";
    if (W != 1)
      throw Error("flat FSDP shards without shard_metadata: cannot tell their padding; expected one (unsharded) file per part, found " +
                      std::to_string(W),
                  files[1]->path);
    const Tensor* root = find_tensor(tensors[0], "flat_param_0");
    if (!root) throw Error("flat file without shard_metadata has no root 'flat_param_0'", f0.path, "model");
    const int64_t E = dims.embed_dim, Ein = dims.input_dim, T = dims.positions;
    const int64_t rest = (Ein != E ? 2 * E * Ein : 0) + (T + 2) * E + (dims.pre_ln ? 2 * E : 0);
    const int64_t n = root->numel();
    if (n <= rest || (n - rest) % Ein != 0)
      throw Error("root flat_param_0 holds " + std::to_string(n) +
                      " elements, which no vocabulary size fits with cfg's dimensions (E=" + std::to_string(E) +
                      ", input dim " + std::to_string(Ein) + ", positions " + std::to_string(T) + ")",
                  f0.path, "model.flat_param_0");
    pm.layout = layout_from_cfg(dims, P, (n - rest) / Ein);
    for (const FlatLayout& fl : pm.layout) {
      const Tensor* t = find_tensor(tensors[0], fl.key());
      if (!t) throw Error("no tensor '" + fl.key() + "' (cfg says the model has " + std::to_string(dims.layers) + " layers)", f0.path, "model");
      if (uint64_t(t->numel()) != fl.numel() || t->dim() != 1)
        throw Error("'" + fl.key() + "' holds " + std::to_string(t->numel()) + " elements but the layout rebuilt from cfg (" +
                        std::to_string(fl.names.size()) + " parameters) needs exactly " + std::to_string(fl.numel()),
                    f0.path, "model");
      used.insert(fl.key());
      pieces.push_back({{t, 0, 0}});
    }
    for (const auto& [name, t] : tensors[0])
      if (is_flat_key(name) && !used.count(name))
        throw Error("flat parameter '" + name + "' is not part of the layout rebuilt from cfg", f0.path, "model");
  } else {
    pm.form = "unflattened file";
    if (W != 1) throw Error("unflattened (consolidated) files: expected one per part, found " + std::to_string(W), files[1]->path);
    std::set<std::string> buffers = {"decoder.version"};
    ValuePtr md = f0.root->get("shard_metadata");
    if (md && md->is_dict())
      if (auto bn = md->get("buffer_names"); bn && bn->is_sequence())
        for (const auto& b : bn->items)
          if (b->is_str()) buffers.insert(clean_fsdp_name(b->s));
    std::vector<std::string> names;
    for (const auto& [name, t] : tensors[0]) {
      if (name == "decoder.output_projection.weight") continue;  // tied to embed_tokens, not stored by FSDP
      if (buffers.count(name) || name.find("_float_tensor") != std::string::npos) continue;
      names.push_back(name);
    }
    std::set<std::string> name_set(names.begin(), names.end());
    auto covers = [&](const std::vector<FlatLayout>& lay) {
      std::set<std::string> s;
      for (const auto& fl : lay)
        for (size_t i = 0; i < fl.names.size(); ++i) {
          const Tensor* t = find_tensor(tensors[0], fl.full_name(i));
          if (!t || t->shape != fl.shapes[i]) return false;
          s.insert(fl.full_name(i));
        }
      return s == name_set;
    };
    std::vector<FlatLayout> lay;
    if (metadata_usable(f0)) {
      try {
        lay = layouts_from_metadata(md, f0.path, nullptr);
      } catch (const Error&) {
        lay.clear();
      }
    }
    if (lay.empty() || !covers(lay)) {
      lay.clear();
      const Tensor* emb = find_tensor(tensors[0], "decoder.embed_tokens.weight");
      if (emb && emb->dim() == 2) {
        ModelDims d2 = dims;
        d2.fused_qkv = name_set.count("decoder.layers.0.self_attn.qkv_proj.weight") > 0 || dims.layers == 0;
        lay = layout_from_cfg(d2, P, emb->shape[0]);
      }
      if (lay.empty() || !covers(lay)) {
        // Neither: one flat group per "decoder.layers.N" prefix plus the root, in file order.
        lay.clear();
        std::map<std::string, size_t> idx;
        static const std::regex layer_re(R"(^(decoder\.layers\.\d+)\.(.+)$)");
        for (const auto& name : names) {
          std::smatch m;
          std::string path = std::regex_match(name, m, layer_re) ? m[1].str() : "";
          std::string rel = path.empty() ? name : m[2].str();
          auto it = idx.find(path);
          if (it == idx.end()) {
            it = idx.emplace(path, lay.size()).first;
            FlatLayout fl;
            fl.fsdp_path = path;
            fl.shared_param_info = Value::list();
            lay.push_back(std::move(fl));
          }
          lay[it->second].names.push_back(rel);
          lay[it->second].shapes.push_back(find_tensor(tensors[0], name)->shape);
        }
        std::stable_sort(lay.begin(), lay.end(), [](const FlatLayout& a, const FlatLayout& b) {
          return a.fsdp_path.empty() && !b.fsdp_path.empty();
        });
      }
    }
    pm.layout = lay;
    for (const FlatLayout& fl : pm.layout)
      for (size_t i = 0; i < fl.names.size(); ++i) {
        std::string name = fl.full_name(i);
        pm.params.push_back(part_tensor(name, *find_tensor(tensors[0], name), f0));
        used.insert(name);
      }
    for (const auto& [name, t] : tensors[0])
      if (buffers.count(name)) {
        pm.buffers.push_back(part_tensor(name, t, f0));
        used.insert(name);
      }
    used.insert("decoder.output_projection.weight");
  }

  // Flat inputs: params are slices of each flat parameter's unpadded bytes.
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::vector<ProducerPtr> ps;
    DType dtype = pieces[i][0].t->dtype;
    for (const RankPiece& p : pieces[i]) {
      const Tensor& t = *p.t;
      const TorchFile& f = *files[p.rank];
      const uint64_t keep = (uint64_t(t.numel()) - p.pad) * dtype_size(t.dtype);
      ps.push_back(slice(tensor_bytes(t, f.file), 0, keep));
    }
    split_flat(pm.layout[i], dtype, concat(ps), ck.files.paths[part][0], pm.params);
  }
  // Model entries nobody claimed: carried along as buffers, never dropped silently.
  if (pm.form != "unflattened file") {
    for (const auto& [name, t] : tensors[0])
      if (!used.count(name)) {
        if (is_flat_key(name)) throw Error("flat parameter '" + name + "' is not described by shard_metadata", f0.path, "model");
        pm.buffers.push_back(part_tensor(name, t, f0));
      }
    for (int64_t r = 1; r < W; ++r)
      for (const auto& [name, t] : tensors[r])
        if (!find_tensor(tensors[0], name))
          throw Error("model holds '" + name + "', which shard 0 does not (a shard from another run?)", files[r]->path);
  } else {
    for (const auto& [name, t] : tensors[0])
      if (!used.count(name) && name.find("_float_tensor") != std::string::npos) pm.buffers.push_back(part_tensor(name, t, f0));
  }

  // Optimizer state: moments are padded like the flat shards; strip each rank's own padding.
  ValuePtr os0 = f0.root->get("last_optimizer_state");
  if (optimizer && os0 && !pieces.empty()) {
    pm.optim_root = os0;
    std::vector<ValuePtr> states;
    for (const auto& f : files) {
      ValuePtr os = f->root->get("last_optimizer_state");
      ValuePtr st = os ? os->get("state") : nullptr;
      if (!st || !st->is_dict()) throw Error("no last_optimizer_state['state'] although shard 0 has one", f->path);
      states.push_back(st);
    }
    auto entry = [&](size_t r, size_t k) -> ValuePtr {
      for (const auto& [key, v] : states[r]->entries)
        if (key->kind == Kind::Int && uint64_t(key->i) == k) return v;
      throw Error("last_optimizer_state has no state for flat parameter " + std::to_string(k) + " ('" +
                      pm.layout[k].key() + "')",
                  files[r]->path);
    };
    std::vector<std::string> moment_keys;
    std::vector<std::vector<ProducerPtr>> moment_flats;  // [key][flat]
    pm.optim_scalars.resize(pieces.size());
    for (size_t k = 0; k < pieces.size(); ++k) {
      ValuePtr e0 = entry(0, k);
      if (!e0->is_dict()) throw Error("optimizer state entry is not a dict", f0.path);
      auto scalars = Value::dict();
      std::vector<std::string> keys_here;
      for (const auto& [key, v] : e0->entries) {
        if (!key->is_str()) continue;
        const uint64_t stored = uint64_t(pieces[k][0].t->numel());
        if (v->is_tensor() && v->tensor->dim() == 1 && uint64_t(v->tensor->numel()) == stored) {
          keys_here.push_back(key->s);
        } else if (v->is_tensor() && v->tensor->numel() > 1) {
          throw Error("optimizer state '" + key->s + "' of '" + pm.layout[k].key() + "' has " + std::to_string(v->tensor->numel()) +
                          " elements but the flat shard has " + std::to_string(stored),
                      f0.path);
        } else {
          scalars->set(key->s, v);
          for (size_t r = 1; r < files.size(); ++r) {
            ValuePtr er = entry(r, k);
            ValuePtr vr = er->is_dict() ? er->get(key->s) : nullptr;
            if (!vr || !same_scalar(v, vr))
              throw Error("optimizer state '" + key->s + "' of '" + pm.layout[k].key() + "' differs from shard 0's", files[r]->path);
          }
        }
      }
      pm.optim_scalars[k] = scalars;
      if (k == 0) {
        moment_keys = keys_here;
        moment_flats.resize(moment_keys.size());
      } else if (keys_here != moment_keys) {
        throw Error("optimizer state of '" + pm.layout[k].key() + "' has other moments than the root's", f0.path);
      }
      for (size_t mk = 0; mk < moment_keys.size(); ++mk) {
        std::vector<ProducerPtr> ps;
        DType mdt{};
        for (const RankPiece& p : pieces[k]) {
          ValuePtr er = entry(p.rank, k);
          ValuePtr v = er->is_dict() ? er->get(moment_keys[mk]) : nullptr;
          const uint64_t stored = uint64_t(p.t->numel());
          if (!v || !v->is_tensor() || v->tensor->dim() != 1 || uint64_t(v->tensor->numel()) != stored)
            throw Error("optimizer state '" + moment_keys[mk] + "' of '" + pm.layout[k].key() + "' does not match the flat shard's " +
                            std::to_string(stored) + " elements",
                        files[p.rank]->path);
          if (ps.empty()) mdt = v->tensor->dtype;
          else if (v->tensor->dtype != mdt)
            throw Error("optimizer state '" + moment_keys[mk] + "' has different dtypes across shards", files[p.rank]->path);
          ps.push_back(slice(tensor_bytes(*v->tensor, files[p.rank]->file), 0, (stored - p.pad) * dtype_size(mdt)));
        }
        moment_flats[mk].push_back(concat(ps));
        (void)mdt;
      }
    }
    for (size_t mk = 0; mk < moment_keys.size(); ++mk) {
      std::vector<PartTensor> ts;
      for (size_t k = 0; k < pieces.size(); ++k) {
        DType mdt = DType(0);
        ValuePtr v = entry(0, k)->get(moment_keys[mk]);
        mdt = v->tensor->dtype;
        split_flat(pm.layout[k], mdt, moment_flats[mk][k], ck.files.paths[part][0], ts);
      }
      pm.moments.emplace_back(moment_keys[mk], std::move(ts));
    }
  }
  return pm;
}

}  // namespace optforge::ckpt
