#include "checkpoint/plan.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <optional>

#include "checkpoint/megatron.h"
#include "io/atomic_dir.h"
#include "io/input_files.h"
#include "util/error.h"
#include "util/human.h"
#include "util/parallel_for.h"
#include "util/progress.h"

namespace optforge::ckpt {

ValuePtr copy_tree(const ValuePtr& v) {
  return map_tensors(v, [](const Tensor& t) { return t; });
}

void set_field(const ValuePtr& obj, const std::string& key, ValuePtr v) {
  if (!obj) return;
  if (obj->is_dict())
    obj->set(key, std::move(v));
  else if (obj->kind == Value::Kind::Object && obj->state && obj->state->is_dict())
    obj->state->set(key, std::move(v));
}

std::shared_ptr<LoadedCheckpoint> open_input(const std::string& in, int threads) {
  return std::make_shared<LoadedCheckpoint>(load_checkpoint(find_checkpoint(in), threads));
}

MetaseqCfg input_dims(const LoadedCheckpoint& ck) {
  if (!ck.first().root->get("cfg")) return {};
  return dims_from_cfg(ck.first().root, ck.first().path);
}

std::vector<std::shared_ptr<PartModel>> read_parts(const LoadedCheckpoint& ck, const MetaseqCfg& d, bool optimizer,
                                                   int threads) {
  std::vector<std::shared_ptr<PartModel>> parts(size_t(ck.files.parts()));
  parallel_for(parts.size(), threads,
               [&](size_t p) { parts[p] = std::make_shared<PartModel>(read_part(ck, p, d, optimizer)); });
  const PartModel& p0 = *parts[0];
  for (size_t p = 1; p < parts.size(); ++p) {
    const PartModel& pp = *parts[p];
    const std::string where = ck.files.paths[p][0];
    if (pp.params.size() != p0.params.size() || pp.buffers.size() != p0.buffers.size())
      throw Error("model part " + std::to_string(p) + " holds " + std::to_string(pp.params.size()) +
                      " parameters and " + std::to_string(pp.buffers.size()) + " buffers, part 0 holds " +
                      std::to_string(p0.params.size()) + " and " + std::to_string(p0.buffers.size()),
                  where);
    for (size_t i = 0; i < p0.params.size(); ++i)
      if (pp.params[i].name != p0.params[i].name)
        throw Error("model part " + std::to_string(p) + " has '" + pp.params[i].name + "' where part 0 has '" +
                        p0.params[i].name + "'",
                    where);
    for (size_t i = 0; i < p0.buffers.size(); ++i)
      if (pp.buffers[i].name != p0.buffers[i].name)
        throw Error("model part " + std::to_string(p) + " has buffer '" + pp.buffers[i].name + "' where part 0 has '" +
                        p0.buffers[i].name + "'",
                    where);
    if (pp.moments.size() != p0.moments.size())
      throw Error("model part " + std::to_string(p) + " has " + (pp.moments.empty() ? "no" : "an") +
                      " optimizer state, unlike part 0",
                  where);
  }
  return parts;
}

std::vector<const PartTensor*> across_parts(const std::vector<std::shared_ptr<PartModel>>& parts, size_t i) {
  std::vector<const PartTensor*> out;
  for (const auto& p : parts) out.push_back(&p->params[i]);
  return out;
}

std::vector<const PartTensor*> buffers_across_parts(const std::vector<std::shared_ptr<PartModel>>& parts, size_t i) {
  std::vector<const PartTensor*> out;
  for (const auto& p : parts) out.push_back(&p->buffers[i]);
  return out;
}

void check_replicas(const Plan& plan, const ExecOptions& opts) {
  // Replicated tensors: metaseq keeps part 0's and at most logs a difference; we report it.
  std::mutex mu;
  std::vector<ReplicaDiff> diffs;
  parallel_for(plan.replica_checks.size(), opts.threads, [&](size_t i) {
    auto d = check_replicated(plan.replica_checks[i]);
    std::lock_guard<std::mutex> lock(mu);
    diffs.insert(diffs.end(), d.begin(), d.end());
  });
  // Under --strict-replicas nothing is written: the lines are the refusal's details, not a choice made.
  for (const auto& d : diffs)
    std::fprintf(stderr,
                 "optforge: %s: replicated tensor '%s' differs between model part 0 and part %zu: %llu element(s), max "
                 "|diff| %g%s\n",
                 opts.strict_replicas ? "note" : "warning", d.name.c_str(), d.part,
                 (unsigned long long)d.elements_differing, d.max_abs_diff,
                 opts.strict_replicas ? "" : "; part 0's is kept");
  if (opts.strict_replicas && !diffs.empty())
    throw Error("replicated tensor '" + diffs[0].name + "' differs across model parts (--strict-replicas)",
                plan.input->files.paths[diffs[0].part][0]);
}

namespace {

void print_dry_run(const Plan& plan, const ExecOptions& opts) {
  GroupWriter writer(plan.outputs, plan.producers, opts.unit_bytes);
  FILE* out = opts.out;
  const LoadedCheckpoint& ck = *plan.input;
  uint64_t in_bytes = 0;
  for (const auto& part : ck.shards)
    for (const auto& f : part) in_bytes += f->file ? f->file->size() : 0;
  std::fprintf(out, "%s plan (dry run: nothing is read or written)\n", plan.operation.c_str());
  std::fprintf(out, "inputs: %lld model part(s) x %lld shard(s), %s (%s), %s\n", (long long)ck.files.parts(),
               (long long)ck.files.shards(), (ck.files.dir + "/" + ck.files.prefix + "*").c_str(),
               plan.parts.empty() ? "?" : plan.parts[0]->form.c_str(), human_bytes(in_bytes).c_str());
  for (size_t p = 0; p < ck.shards.size(); ++p)
    for (const auto& f : ck.shards[p])
      std::fprintf(out, "  in   %-60s %12s\n", f->path.c_str(), human_bytes(f->file ? f->file->size() : 0).c_str());
  for (const auto& n : plan.notes) std::fprintf(out, "note: %s\n", n.c_str());
  auto files = writer.files();
  std::fprintf(out, "outputs: %zu file(s), %s of tensor data, %zu unit(s) of at most %s\n", files.size(),
               human_bytes(writer.total_data_bytes()).c_str(), writer.unit_count(),
               human_bytes(opts.unit_bytes).c_str());
  for (const auto& f : files)
    std::fprintf(out, "  out  %-60s %12s  %zu tensors\n", f.path.c_str(), human_bytes(f.size).c_str(), f.tensors);
  std::fprintf(out, "replicated tensors to compare across parts: %zu\n", plan.replica_checks.size());
}

// The outputs as written: inside the temporary folder when the plan writes a folder.
std::vector<OutputSpec> outputs_in(const Plan& plan, const AtomicDir* dir) {
  std::vector<OutputSpec> outs = plan.outputs;
  if (!dir) return outs;
  for (OutputSpec& o : outs) {
    std::filesystem::path p(o.path);
    if ((std::filesystem::path(plan.output_dir) / p.filename()).lexically_normal() != p.lexically_normal())
      throw Error("internal: output outside the output folder " + plan.output_dir, o.path);
    o.path = dir->path(p.filename().string());
  }
  return outs;
}

}  // namespace

uint64_t execute(Plan& plan, const ExecOptions& opts) {
  if (opts.dry_run) {
    print_dry_run(plan, opts);
    return 0;
  }
  // Inputs are never written: AtomicFile::commit_all refuses such a rename; asking the same
  // question (io/input_files) here refuses before any byte is written.
  for (const auto& o : plan.outputs)
    if (is_input_file(o.path))
      throw Error("the output would replace an input file (inputs are never modified)", o.path);
  // A folder output is written whole into a temporary folder and renamed into place at the end;
  // on any error (or Ctrl-C) the temporary folder is removed, and a hard kill leaves only it.
  std::optional<AtomicDir> dir;
  if (!plan.output_dir.empty()) dir.emplace(plan.output_dir);
  GroupWriter writer(outputs_in(plan, dir ? &*dir : nullptr), plan.producers, opts.unit_bytes);
  check_replicas(plan, opts);
  Progress bar(plan.operation, writer.total_data_bytes(), opts.progress);
  writer.run(opts.threads, [&](uint64_t n) { bar.add(n); });
  if (dir) dir->commit();
  bar.finish();
  return writer.total_data_bytes();
}

}  // namespace optforge::ckpt
