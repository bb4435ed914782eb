#include "checkpoint/reshard.h"

#include <array>
#include <filesystem>
#include <map>

#include "checkpoint/megatron.h"
#include "io/atomic_dir.h"
#include "opt/roles.h"
#include "util/error.h"

namespace optforge::ckpt {
namespace {

namespace fs = std::filesystem;

ValuePtr int_list(const std::vector<uint64_t>& v) {
  auto l = Value::list();
  for (auto x : v) l->items.push_back(Value::integer(int64_t(x)));
  return l;
}

ValuePtr shape_tuple(const Shape& s) {
  auto t = Value::tuple();
  for (auto d : s) t->items.push_back(Value::integer(d));
  return t;
}

// Replaces the separate k, v, q tensors of one kind (weights or biases) in `fl` by the fused
// qkv_proj = [K; V; Q] rows at k's place, as ModelParallelMultiheadAttention stores them.
void fuse_one(PartModel& pm, FlatLayout& fl, Role fused) {
  const auto kvq = kvq_roles(fused);
  std::array<size_t, 3> at{};
  int64_t layer = -1;
  for (size_t j = 0; j < 3; ++j) {
    size_t i = 0;
    for (; i < fl.names.size(); ++i) {
      auto ref = parse_role_name(Layout::Metaseq, fl.full_name(i));
      if (ref && ref->role == kvq[j]) break;
    }
    if (i == fl.names.size()) return;  // not this instance (or already fused)
    at[j] = i;
    layer = parse_role_name(Layout::Metaseq, fl.full_name(i))->layer;
  }
  auto param = [&](size_t j) -> PartTensor& {
    for (auto& t : pm.params)
      if (t.name == fl.full_name(j)) return t;
    throw Error("internal: parameter '" + fl.full_name(j) + "' missing");
  };
  PartTensor &k = param(at[0]), &v = param(at[1]), &q = param(at[2]);
  if (k.shape != v.shape || k.shape != q.shape || k.dtype != v.dtype || k.dtype != q.dtype)
    throw Error("cannot fuse '" + k.name + "', v_proj and q_proj: their shapes or dtypes differ", k.origin);
  PartTensor f = k;
  f.name = role_name(role_spec(fused), Layout::Metaseq, layer);
  f.shape[0] *= 3;
  f.bytes = concat({k.bytes, v.bytes, q.bytes});
  const std::string vn = v.name, qn = q.name;
  k = f;
  std::erase_if(pm.params, [&](const PartTensor& t) { return t.name == vn || t.name == qn; });
  fl.names[at[0]] = fl.fsdp_path.empty() ? f.name : f.name.substr(fl.fsdp_path.size() + 1);
  fl.shapes[at[0]] = f.shape;
  for (size_t j : {std::max(at[1], at[2]), std::min(at[1], at[2])}) {  // higher index first
    fl.names.erase(fl.names.begin() + int64_t(j));
    fl.shapes.erase(fl.shapes.begin() + int64_t(j));
  }
}

// A singleton (or any part) with separate k/v/q projections of a Megatron model: fuse them.
void fuse_qkv(PartModel& pm) {
  for (FlatLayout& fl : pm.layout)
    for (Role fused : {Role::QkvWeight, Role::QkvBias}) fuse_one(pm, fl, fused);
  // The params vector must follow the layout order.
  std::vector<PartTensor> ordered;
  for (const FlatLayout& fl : pm.layout)
    for (size_t i = 0; i < fl.names.size(); ++i)
      for (auto& t : pm.params)
        if (t.name == fl.full_name(i)) ordered.push_back(t);
  pm.params = std::move(ordered);
}

ValuePtr state_entry(const ValuePtr& optim_root, size_t k) {
  ValuePtr st = optim_root ? optim_root->get("state") : nullptr;
  if (st)
    for (const auto& [key, v] : st->entries)
      if (key->kind == Value::Kind::Int && uint64_t(key->i) == k) return v;
  return nullptr;
}

// What every step of planning one reshard shares.
struct Reshard {
  const ReshardOptions& o;
  Plan& plan;
  const PartModel& p0;  // input part 0: the layout and names every part shares
  bool with_optim = false;

  // A weight's bytes cast to --dtype (floating point only); `dt` receives the output dtype.
  ProducerPtr cast_to(const ProducerPtr& p, DType from, DType* dt) const {
    if (o.dtype && is_floating(from) && *o.dtype != from) {
      *dt = *o.dtype;
      return cast(p, from, *o.dtype);
    }
    *dt = from;
    return p;
  }
};

// One flat parameter of one output model part, before FSDP sharding.
struct FlatOut {
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  ProducerPtr bytes;
  DType dtype{};
  uint64_t n = 0;
  std::vector<ProducerPtr> moments;  // per moment key (fp32 as stored)
  std::vector<DType> moment_dtypes;
};

// Output part m's flat parameters: every input parameter regrouped by its Megatron rule.
std::vector<FlatOut> part_flats(const Reshard& R, int64_t m) {
  const PartModel& p0 = R.p0;
  const auto& parts = R.plan.parts;
  std::vector<FlatOut> flats;
  size_t idx = 0;
  for (const FlatLayout& fl : p0.layout) {
    FlatOut f;
    std::vector<ProducerPtr> ps;
    std::vector<std::vector<ProducerPtr>> ms(p0.moments.size());
    for (size_t j = 0; j < fl.names.size(); ++j, ++idx) {
      const PartTensor& t = p0.params.at(idx);
      Regrouped r = regroup(across_parts(parts, idx), R.o.mp, m);
      DType dt;
      ProducerPtr b = R.cast_to(r.bytes, t.dtype, &dt);
      if (j == 0)
        f.dtype = dt;
      else if (dt != f.dtype)
        throw Error("'" + t.name + "' is " + std::string(dtype_name(dt)) + " but the other parameters of '" + fl.key() +
                        "' are " + std::string(dtype_name(f.dtype)) + ": one flat parameter holds one dtype",
                    t.origin);
      f.names.push_back(fl.names[j]);
      f.shapes.push_back(r.shape);
      f.n += numel_of(r.shape);
      ps.push_back(b);
      if (R.with_optim)
        for (size_t mk = 0; mk < p0.moments.size(); ++mk) {
          std::vector<const PartTensor*> mt;
          for (const auto& p : parts) mt.push_back(&p->moments[mk].second.at(idx));
          ms[mk].push_back(regroup(mt, R.o.mp, m).bytes);
        }
    }
    f.bytes = concat(ps);
    if (R.with_optim)
      for (size_t mk = 0; mk < p0.moments.size(); ++mk) {
        f.moments.push_back(concat(ms[mk]));
        f.moment_dtypes.push_back(p0.moments[mk].second.at(idx - 1).dtype);
      }
    flats.push_back(std::move(f));
  }
  return flats;
}

// The input's cfg for output part m of M x W.
ValuePtr part_cfg(const TorchFile& f0, int64_t M, int64_t W, int64_t m) {
  ValuePtr cfg = copy_tree(f0.root->get("cfg"));
  set_field(cfg->attr("model"), "model_parallel_size", Value::integer(M));
  if (auto v = cfg->attr("model"); v && v->attr("distributed_world_size"))
    set_field(v, "distributed_world_size", Value::integer(M * W));
  if (auto c = cfg->attr("common"); c && c->attr("model_parallel_size"))
    set_field(c, "model_parallel_size", Value::integer(M));
  if (auto d = cfg->attr("distributed_training"); d && d->attr("distributed_world_size"))
    set_field(d, "distributed_world_size", Value::integer(M * W));
  if (auto c = cfg->attr("checkpoint"); c && c->attr("checkpoint_suffix"))
    set_field(c, "checkpoint_suffix", Value::str("-model_part-" + std::to_string(m)));
  return cfg;
}

// One output shard file (rank r of part m) being assembled: its model dict, shard_metadata and
// optimizer state, flat parameter by flat parameter.
struct ShardOut {
  const Reshard& R;
  const std::vector<FlatOut>& flats;
  int64_t rank;
  ValuePtr model = Value::dict(), param_metadata = Value::list(), state = Value::dict();
  std::map<std::string, ValuePtr> md_by_path;

  // This rank's chunk of a flat tensor of n elements (torch.chunk + zero padding).
  std::pair<ValuePtr, ShardSpan> flat_tensor(const ProducerPtr& bytes, DType dt, uint64_t n) {
    ShardSpan s = fsdp_shard(n, R.o.fsdp, rank);
    const uint64_t es = dtype_size(dt);
    ProducerPtr p = concat({slice(bytes, s.begin * es, s.len * es), zeros(s.pad * es)});
    return {Value::of_tensor(produced_tensor(p, dt, {int64_t(s.stored())}, R.plan.producers)), s};
  }

  ValuePtr instance_metadata(const FlatLayout& fl) {
    auto it = md_by_path.find(fl.fsdp_path);
    if (it != md_by_path.end()) return it->second;
    auto inst = Value::dict();
    inst->set("fsdp_path", Value::str(fl.fsdp_path));
    inst->set("params", Value::dict());
    inst->set("no_broadcast_optim_state", Value::boolean(fl.no_broadcast_optim_state));
    inst->set("shared_param_info", fl.shared_param_info ? fl.shared_param_info : Value::list());
    param_metadata->items.push_back(inst);
    return md_by_path.emplace(fl.fsdp_path, inst).first->second;
  }

  void add_optimizer_entry(size_t k) {
    const FlatOut& f = flats[k];
    auto entry = Value::dict();
    for (const auto& [key, v] : state_entry(R.p0.optim_root, k)->entries) {
      if (!key->is_str()) continue;
      bool moment = false;
      for (size_t mk = 0; mk < R.p0.moments.size(); ++mk)
        if (R.p0.moments[mk].first == key->s) {
          entry->set(key->s, flat_tensor(f.moments[mk], f.moment_dtypes[mk], f.n).first);
          moment = true;
        }
      if (!moment) entry->set(key->s, v);
    }
    state->entries.emplace_back(Value::integer(int64_t(k)), entry);
  }

  void add_flat(size_t k) {
    const FlatLayout& fl = R.p0.layout[k];
    const FlatOut& f = flats[k];
    auto [tv, span] = flat_tensor(f.bytes, f.dtype, f.n);
    model->set(fl.key(), tv);
    auto info = Value::dict();
    auto names = Value::list(), shapes = Value::list();
    std::vector<uint64_t> numels;
    for (size_t j = 0; j < f.names.size(); ++j) {
      names->items.push_back(Value::str(f.names[j]));
      shapes->items.push_back(shape_tuple(f.shapes[j]));
      numels.push_back(numel_of(f.shapes[j]));
    }
    info->set("names", names);
    info->set("shapes", shapes);
    info->set("numels", int_list(numels));
    info->set("padding", Value::integer(int64_t(span.pad)));
    instance_metadata(fl)->get("params")->set(fl.flat_name, info);
    if (R.with_optim) add_optimizer_entry(k);
  }

  // fairscale's order: the root's flat parameters, then buffers, then the inner instances.
  ValuePtr fill() {
    for (size_t k = 0; k < R.p0.layout.size(); ++k)
      if (R.p0.layout[k].fsdp_path.empty()) add_flat(k);
    auto buffer_names = Value::list();
    for (const PartTensor& t : R.p0.buffers) {
      DType dt;
      ProducerPtr b = R.cast_to(t.bytes, t.dtype, &dt);
      model->set(t.name, Value::of_tensor(produced_tensor(b, dt, t.shape, R.plan.producers)));
      buffer_names->items.push_back(Value::str(t.name));
    }
    for (size_t k = 0; k < R.p0.layout.size(); ++k)
      if (!R.p0.layout[k].fsdp_path.empty()) add_flat(k);
    auto shard_md = Value::dict();
    shard_md->set("param_metadata", param_metadata);
    shard_md->set("buffer_names", buffer_names);
    return shard_md;
  }
};

// The output file's top level: the input's keys in the input's order with model, cfg,
// shard_metadata and the optimizer state replaced.
ValuePtr shard_root(const Reshard& R, const TorchFile& f0, const ShardOut& s, const ValuePtr& shard_md,
                    const ValuePtr& cfg) {
  auto root = Value::dict();
  for (const auto& [k, v] : f0.root->entries) {
    if (!k->is_str()) continue;
    if (k->s == "model")
      root->set("model", s.model);
    else if (k->s == "cfg")
      root->set("cfg", cfg);
    else if (k->s == "shard_metadata")
      root->set("shard_metadata", shard_md);
    else if (k->s == "last_optimizer_state") {
      if (!R.with_optim) continue;
      ValuePtr os = Value::dict();
      for (const auto& [ok, ov] : R.p0.optim_root->entries)
        os->entries.emplace_back(ok, ok->is_str() && ok->s == "state" ? s.state : ov);
      root->set("last_optimizer_state", os);
    } else {
      root->entries.emplace_back(k, v);
    }
  }
  if (!root->get("model")) root->set("model", s.model);
  if (!root->get("shard_metadata")) root->set("shard_metadata", shard_md);
  return root;
}

// The folder is written by an AtomicDir: its rule (a new or empty folder) decides here too, so a
// dry run reports the refusal the real run would give.
void check_output_folder(const ReshardOptions& o, Plan& plan) {
  check_new_folder_output(o.outdir);
  plan.output_dir = o.outdir;
}

// Reads the input's parts (fusing a singleton's k/v/q for Megatron models) into plan.parts.
void read_input(Plan& plan, const LoadedCheckpoint& ck, const ReshardOptions& o) {
  const int64_t M = o.mp;
  if (M < 1) throw Error("--mp must be at least 1");
  if (o.fsdp < 1) throw Error("--fsdp must be at least 1");
  const MetaseqCfg dims = dims_from_cfg(ck.first().root, ck.first().path);  // throws without a cfg
  if (dims.config.heads % M != 0)
    throw Error("--mp " + std::to_string(M) + " does not divide the model's " + std::to_string(dims.config.heads) +
                    " attention heads (decoder_attention_heads; tensor " +
                    role_name(role_spec(Role::QkvWeight), Layout::MetaseqFused, 0) + ")",
                ck.first().path);
  plan.parts = read_parts(ck, dims, !o.drop_optimizer_state, o.threads);
  if (dims.fused_qkv)
    for (auto& p : plan.parts)
      if (p->moments.empty()) fuse_qkv(*p);
}

Plan build(std::shared_ptr<LoadedCheckpoint> ck, const ReshardOptions& o) {
  Plan plan;
  plan.operation = "reshard";
  plan.input = ck;
  read_input(plan, *ck, o);
  const PartModel& p0 = *plan.parts[0];
  plan.notes.push_back("input form: " + p0.form + (p0.moments.empty() ? "" : ", with optimizer state"));
  if (!p0.moments.empty() && o.drop_optimizer_state) plan.notes.push_back("optimizer state dropped");
  const Reshard R{o, plan, p0, !p0.moments.empty() && !o.drop_optimizer_state};
  if (plan.parts.size() > 1) {  // replicated tensors are compared across input parts once
    for (size_t i = 0; i < p0.params.size(); ++i)
      if (classify(p0.params[i].name) == TpSplit::Replicated)
        plan.replica_checks.push_back(across_parts(plan.parts, i));
    for (size_t i = 0; i < p0.buffers.size(); ++i) plan.replica_checks.push_back(buffers_across_parts(plan.parts, i));
  }
  const TorchFile& f0 = ck->first();
  for (int64_t m = 0; m < o.mp; ++m) {
    const std::vector<FlatOut> flats = part_flats(R, m);
    const ValuePtr cfg = part_cfg(f0, o.mp, o.fsdp, m);
    for (int64_t r = 0; r < o.fsdp; ++r) {
      ShardOut s{R, flats, r};
      const ValuePtr shard_md = s.fill();
      std::string name = o.prefix + "-model_part-" + std::to_string(m);
      if (o.shard_suffix || o.fsdp > 1) name += "-shard" + std::to_string(r);
      plan.outputs.push_back({(fs::path(o.outdir) / (name + ".pt")).string(), shard_root(R, f0, s, shard_md, cfg)});
    }
  }
  check_output_folder(o, plan);
  return plan;
}

}  // namespace

Plan plan_reshard(const ReshardOptions& o) { return build(open_input(o.input, o.threads), o); }

Plan plan_write_sharded(const ValuePtr& singleton_root, const ReshardOptions& o) {
  auto tf = std::make_shared<TorchFile>();
  tf->path = "(in-memory checkpoint)";
  tf->root = singleton_root;
  if (!tf->root || !tf->root->is_dict() || !tf->root->get("model")) throw Error("not a metaseq state: no 'model' dict");
  auto ck = std::make_shared<LoadedCheckpoint>();
  ck->files.dir = ".";
  ck->files.paths = {{tf->path}};
  ck->shards = {{tf}};
  return build(ck, o);
}

}  // namespace optforge::ckpt
