#include "checkpoint/consolidate.h"

#include <algorithm>
#include <map>
#include <regex>

#include "checkpoint/megatron.h"
#include "util/error.h"

namespace optforge::ckpt {
namespace {

std::string replace_first(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

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
  static const std::vector<std::string> before = {"decoder.embed_tokens.weight", "decoder.project_in_dim.weight",
                                                  "decoder.embed_positions.weight"};
  static const std::vector<std::string> after = {"decoder.layer_norm.weight", "decoder.layer_norm.bias",
                                                 "decoder.project_out_dim.weight"};
  static const std::regex layer_re(R"(^decoder\.layers\.(\d+)\.)");
  std::vector<size_t> out;
  std::vector<bool> taken(names.size(), false);
  auto take = [&](size_t i) {
    if (!taken[i]) {
      taken[i] = true;
      out.push_back(i);
    }
  };
  auto take_name = [&](const std::string& n) {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == n) take(i);
  };
  for (const auto& n : before) take_name(n);
  std::map<int64_t, std::vector<size_t>> layers;
  for (size_t i = 0; i < names.size(); ++i) {
    std::smatch m;
    if (std::regex_search(names[i], m, layer_re)) layers[std::stoll(m[1].str())].push_back(i);
  }
  for (const auto& [l, idx] : layers)
    for (size_t i : idx) take(i);
  for (const auto& n : after) take_name(n);
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] != "decoder.version") take(i);
  take_name("decoder.version");
  return out;
}

Plan plan_consolidate(const ConsolidateOptions& o) {
  Plan plan;
  plan.operation = "consolidate";
  plan.input = open_input(o.input, o.threads);
  const LoadedCheckpoint& ck = *plan.input;
  const ModelDims dims = input_dims(ck);
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
      plan.outputs.push_back({stem + "-model_part-" + std::to_string(p) + ".pt",
                              top_level(*ck.shards[p][0], model, std::nullopt)});
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
    if (t.name == "decoder.output_projection.weight") continue;
    Split s = classify(t.name);
    if (s == Split::Qkv) {
      auto kvq = glue_qkv(ts);
      const char* letters[] = {"k", "v", "q"};
      for (int j = 0; j < 3; ++j) {
        names.push_back(replace_first(t.name, "qkv", letters[j]));
        values.push_back(make(t, kvq[size_t(j)].bytes, kvq[size_t(j)].shape));
      }
      continue;
    }
    if (s == Split::Replicated && P > 1) plan.replica_checks.push_back(ts);
    Regrouped r = regroup(ts, 1, 0);
    names.push_back(t.name);
    values.push_back(make(t, r.bytes, r.shape));
  }
  for (size_t i = 0; i < p0.buffers.size(); ++i) {
    const PartTensor& t = p0.buffers[i];
    if (t.name == "decoder.output_projection.weight") continue;
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
