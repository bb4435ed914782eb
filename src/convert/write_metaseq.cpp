#include <cstdio>
#include <cstring>

#include "convert/model_writers.h"
#include "formats/torch_file.h"
#include "opt/random_model.h"
#include "tensor/views.h"
#include "util/error.h"

namespace optforge {

namespace {
// A shallow copy of a dict/Namespace so that editing one field leaves the input's tree alone.
ValuePtr copy_shallow(const ValuePtr& v) {
  if (!v) return v;
  if (v->is_dict()) {
    auto d = Value::dict(v->ordered);
    d->entries = v->entries;
    d->state = v->state;
    return d;
  }
  if (v->kind == Value::Kind::Object) return Value::object(v->s, v->items, copy_shallow(v->state));
  return v;
}
}  // namespace

void note_token_ids_not_kept(const OptConfig& c, const char* layout) {
  if (c.pad_token_id != 1 || c.bos_token_id != 2 || c.eos_token_id != 2)
    std::fprintf(stderr,
                 "optforge: note: %s carry no token ids (OPT's dictionary fixes pad 1, bos/eos 2); "
                 "the config's pad %lld, bos %lld, eos %lld are not kept\n",
                 layout, (long long)c.pad_token_id, (long long)c.bos_token_id, (long long)c.eos_token_id);
}

ValuePtr metaseq_singleton_root(const OptTensors& m) {
  const DType dt = m.dtype();
  const OptConfig& c = m.config;
  note_token_ids_not_kept(c, "metaseq checkpoints");
  auto model = Value::dict();
  for (const auto& [name, t] : m.tensors) model->entries.emplace_back(Value::str(name), Value::of_tensor(compact(t)));
  model->set("decoder.version", Value::of_tensor(metaseq_version_buffer(dt)));

  ValuePtr root;
  if (m.metaseq_root && m.metaseq_root->is_dict()) {
    root = copy_shallow(m.metaseq_root);
    for (const char* k : {"shard_metadata", "last_optimizer_state"}) root->erase(k);
  } else {
    root = Value::dict();
    root->set("cfg", metaseq_cfg(m.config, 1, dt));
    root->set("model", Value::none());  // keeps metaseq's key order: cfg, model, ...
    root->set("criterion", Value::none());
    root->set("optimizer_history", Value::list());
    root->set("task_state", Value::dict());
    root->set("extra_state", Value::dict());
  }
  // cfg.model.model_parallel_size = 1, without touching the input's tree.
  if (auto cfg = root->get("cfg"); cfg && cfg->is_dict()) {
    auto cfg2 = copy_shallow(cfg);
    if (auto model_cfg = cfg2->get("model"); model_cfg && model_cfg->kind == Value::Kind::Object && model_cfg->state) {
      auto mc = copy_shallow(model_cfg);
      mc->state->set("model_parallel_size", Value::integer(1));
      cfg2->set("model", mc);
    }
    root->set("cfg", cfg2);
  }
  root->set("model", model);
  return root;
}

void write_metaseq_singleton(const OptTensors& m, const std::string& outfile) {
  ValuePtr root;
  try {
    root = metaseq_singleton_root(m);
  } catch (const Error& e) { throw e.with_file(outfile); }
  save_torch_file(outfile, root);
}

}  // namespace optforge
