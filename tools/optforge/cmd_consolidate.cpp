// optforge consolidate IN -o OUT.pt: all model parts and FSDP shards of a metaseq checkpoint into
// one restored.pt-style singleton (or, with --no-stitch-megatron, one file per model part).
#include <chrono>
#include <cstdio>

#include "checkpoint/consolidate.h"
#include "commands.h"
#include "util/error.h"
#include "util/human.h"
#include "util/progress.h"
#include "util/thread_pool.h"

namespace optforge::cli {

void register_consolidate(CLI::App& app) {
  struct Options {
    std::string in, out, dtype;
    bool no_stitch = false, dry_run = false, strict = false, quiet = false;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("consolidate", "Consolidate a sharded metaseq checkpoint (MP parts x FSDP shards) into one file");
  cmd->add_option("input", o->in,
                  "Checkpoint folder or path prefix (DIR/checkpoint_last): raw -model_part-K-shardR.pt shards, "
                  "released reshard-model_part-K.pt files, or unflattened part files")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output .pt (with --no-stitch-megatron: OUT-model_part-K.pt per part)")->required();
  cmd->add_flag("--no-stitch-megatron", o->no_stitch, "Write one consolidated file per model part instead of gluing them");
  cmd->add_option("--dtype", o->dtype, "Cast floating-point tensors: f32, f16 or bf16");
  cmd->add_option("-j,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_flag("--dry-run", o->dry_run, "Print the plan (inputs, outputs, bytes) and write nothing");
  cmd->add_flag("--strict-replicas", o->strict, "Fail if a replicated tensor differs between model parts");
  cmd->add_flag("-q,--quiet", o->quiet, "No progress bar");
  cmd->callback([o] {
    auto t0 = std::chrono::steady_clock::now();
    ckpt::ConsolidateOptions co;
    co.input = o->in;
    co.output = o->out;
    co.no_stitch = o->no_stitch;
    co.threads = o->threads > 0 ? o->threads : hardware_threads();
    if (!o->dtype.empty()) {
      co.dtype = dtype_from_name(o->dtype);
      if (!co.dtype || !is_floating(*co.dtype)) throw Error("--dtype must be f32, f16 or bf16, got '" + o->dtype + "'");
    }
    ckpt::Plan plan = ckpt::plan_consolidate(co);
    ckpt::ExecOptions eo;
    eo.threads = co.threads;
    eo.dry_run = o->dry_run;
    eo.strict_replicas = o->strict;
    eo.progress = !o->quiet && Progress::stderr_is_terminal();
    uint64_t bytes = ckpt::execute(plan, eo);
    if (o->dry_run) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& out : plan.outputs) std::printf("wrote %s\n", out.path.c_str());
    std::printf("consolidated %lld part(s) x %lld shard(s): %s in %.2f s (%s/s)\n",
                (long long)plan.input->files.parts(), (long long)plan.input->files.shards(), human_bytes(bytes).c_str(), s,
                human_bytes(s > 0 ? uint64_t(double(bytes) / s) : 0).c_str());
  });
}

}  // namespace optforge::cli
