#include "checkpoint/consolidate.h"

#include <algorithm>

#include "checkpoint/megatron.h"
#include "opt/roles.h"
#include "util/error.h"

namespace optforge::ckpt {
namespace {

ProducerPtr maybe_cast(const ProducerPtr& p, DType from, const std::optional<DType>& to, DType* out) {
  if (to && is_floating(from) && *to != from) {
    *out = *to;
    return cast(p, from, *to);
  }
  *out = from;
  return p;
}

// The input's top-level dict with `model` replaced, cfg's model_parallel_size set, and the keys
// a singleton must not carry (stale shard_metadata, the optimizer state) left out.
ValuePtr top_level(const TorchFile& f, const ValuePtr& model, std::optional<int64_t> mp) {
  auto root = Value::dict();
  for (const auto& [k, v] : f.root->entries) {
    if (!k->is_str()) continue;
    if (k->s == "model") {
      root->set("model", model);
    } else if (k->s == "shard_metadata" || k->s == "last_optimizer_state") {
      continue;
    } else if (k->s == "cfg" && mp) {
      ValuePtr cfg = copy_tree(v);
      set_field(cfg->attr("model"), "model_parallel_size", Value::integer(*mp));
      if (auto common = cfg->attr("common"); common && common->attr("model_parallel_size"))
        set_field(common, "model_parallel_size", Value::integer(*mp));
      if (auto ck = cfg->attr("checkpoint"); ck && ck->attr("checkpoint_suffix"))
        set_field(ck, "checkpoint_suffix", Value::str(""));
      root->set("cfg", cfg);
    } else {
      root->entries.emplace_back(k, v);
    }
  }
  if (!root->get("model")) root->set("model", model);
  return root;
}

}  // namespace

std::vector<size_t> restored_order(const std::vector<std::string>& names) {
  // Sort key: model roles before the layers (table order), the layers by number (file order
  // within a layer: glued k, v, q stay where qkv was), model roles after the layers, then names
  // outside the table in file order, decoder.version last.
  auto key = [&](const std::string& n) -> std::pair<int, int64_t> {
    if (n == "decoder.version") return {4, 0};
    auto ref = parse_role_name(Layout::Metaseq, n);
    if (auto layer = layer_of(Layout::Metaseq, n); layer && !ref)
      return {1, *layer};  // unknown layer names stay in their layer
    if (!ref || ref->role == Role::LmHead) return {3, 0};
    if (ref->layer >= 0) return {1, ref->layer};
    return {role_place(ref->role) == Place::BeforeLayers ? 0 : 2, int64_t(ref->role)};
  };
  std::vector<size_t> out(names.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = i;
  std::stable_sort(out.begin(), out.end(), [&](size_t a, size_t b) { return key(names[a]) < key(names[b]); });
  return out;
}

Plan plan_consolidate(const ConsolidateOptions& o) {
  Plan plan;
  plan.operation = "consolidate";
  plan.input = open_input(o.input, o.threads);
  const LoadedCheckpoint& ck = *plan.input;
  const MetaseqCfg dims = input_dims(ck);
  plan.parts = read_parts(ck, dims, false, o.threads);
  const auto& parts = plan.parts;
  const size_t P = parts.size();
  plan.notes.push_back("input form: " + parts[0]->form);
  std::string stem = o.output;
  if (stem.size() > 3 && stem.compare(stem.size() - 3, 3, ".pt") == 0) stem.resize(stem.size() - 3);

  auto make = [&](const PartTensor& t, const ProducerPtr& bytes, const Shape& shape) {
    DType dt;
    ProducerPtr p = maybe_cast(bytes, t.dtype, o.dtype, &dt);
    return Value::of_tensor(produced_tensor(p, dt, shape, plan.producers));
  };

  if (o.no_stitch) {
    for (size_t p = 0; p < P; ++p) {
      auto model = Value::dict();
      for (const auto& t : parts[p]->params) model->set(t.name, make(t, t.bytes, t.shape));
      for (const auto& t : parts[p]->buffers) model->set(t.name, make(t, t.bytes, t.shape));
      plan.outputs.push_back(
          {stem + "-model_part-" + std::to_string(p) + ".pt", top_level(*ck.shards[p][0], model, std::nullopt)});
    }
    return plan;
  }

  // Glue in part 0's order (qkv replaced in place by k, v, q), then reorder as restored.pt.
  std::vector<std::string> names;
  std::vector<ValuePtr> values;
  const PartModel& p0 = *parts[0];
  for (size_t i = 0; i < p0.params.size(); ++i) {
    const PartTensor& t = p0.params[i];
    auto ts = across_parts(parts, i);
    const auto ref = parse_role_name(Layout::Metaseq, t.name);
    if (ref && ref->role == Role::LmHead) continue;  // tied to embed_tokens
    const TpSplit s = classify(t.name);
    if (s == TpSplit::FusedColumn) {
      auto kvq = glue_qkv(ts);
      const auto roles = kvq_roles(ref->role);
      for (size_t j = 0; j < 3; ++j) {
        names.push_back(role_name(role_spec(roles[j]), Layout::Metaseq, ref->layer));
        values.push_back(make(t, kvq[j].bytes, kvq[j].shape));
      }
      continue;
    }
    if (s == TpSplit::Replicated && P > 1) plan.replica_checks.push_back(ts);
    Regrouped r = regroup(ts, 1, 0);
    names.push_back(t.name);
    values.push_back(make(t, r.bytes, r.shape));
  }
  for (size_t i = 0; i < p0.buffers.size(); ++i) {
    const PartTensor& t = p0.buffers[i];
    if (t.name == role_name(role_spec(Role::LmHead), Layout::Metaseq)) continue;
    auto ts = buffers_across_parts(parts, i);
    if (P > 1) plan.replica_checks.push_back(ts);
    names.push_back(t.name);
    values.push_back(make(t, t.bytes, t.shape));
  }
  auto model = Value::dict();
  for (size_t i : restored_order(names)) model->entries.emplace_back(Value::str(names[i]), values[i]);
  plan.outputs.push_back({o.output, top_level(ck.first(), model, 1)});
  return plan;
}

}  // namespace optforge::ckpt
