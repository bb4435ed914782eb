// optforge consolidate IN -o OUT.pt: all model parts and FSDP shards of a metaseq checkpoint into
// one restored.pt-style singleton (or, with --no-stitch-megatron, one file per model part).
#include <chrono>
#include <cstdio>

#include "checkpoint/consolidate.h"
#include "commands.h"
#include "plan_options.h"
#include "util/error.h"
#include "util/human.h"

namespace optforge::cli {

void register_consolidate(CLI::App& app) {
  struct Options : PlanOptions {
    std::string in, out;
    bool no_stitch = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("consolidate",
                                 "Consolidate a sharded metaseq checkpoint (MP parts x FSDP shards) into one file");
  cmd->add_option("input", o->in,
                  "Checkpoint folder or path prefix (DIR/checkpoint_last): raw -model_part-K-shardR.pt shards, "
                  "released reshard-model_part-K.pt files, or unflattened part files")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output .pt (with --no-stitch-megatron: OUT-model_part-K.pt per part)")
      ->required();
  cmd->add_flag("--no-stitch-megatron", o->no_stitch,
                "Write one consolidated file per model part instead of gluing them");
  add_plan_options(cmd, *o, "Cast floating-point tensors: f32, f16 or bf16");
  cmd->callback([o] {
    auto t0 = std::chrono::steady_clock::now();
    ckpt::ConsolidateOptions co;
    co.input = o->in;
    co.output = o->out;
    co.no_stitch = o->no_stitch;
    co.threads = plan_threads(*o);
    co.dtype = plan_dtype(*o);
    ckpt::Plan plan = ckpt::plan_consolidate(co);
    uint64_t bytes = run_plan(plan, *o);
    if (o->dry_run) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& out : plan.outputs) std::printf("wrote %s\n", out.path.c_str());
    std::printf("consolidated %lld part(s) x %lld shard(s): %s in %.2f s (%s/s)\n",
                (long long)plan.input->files.parts(), (long long)plan.input->files.shards(), human_bytes(bytes).c_str(),
                s, human_bytes(s > 0 ? uint64_t(double(bytes) / s) : 0).c_str());
  });
}

}  // namespace optforge::cli
