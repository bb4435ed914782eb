// optforge reshard IN -o OUTDIR --fsdp N --mp M: a metaseq checkpoint to M model parts x N FSDP
// shards, written as metaseq's trainer writes raw shards (flat params, padding, shard_metadata).
#include <chrono>
#include <cstdio>

#include "checkpoint/reshard.h"
#include "commands.h"
#include "plan_options.h"
#include "util/error.h"
#include "util/human.h"

namespace optforge::cli {

void register_reshard(CLI::App& app) {
  struct Options : PlanOptions {
    std::string in, out, prefix = "checkpoint_last";
    int64_t fsdp = 1, mp = 1;
    bool drop = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("reshard", "Reshard a metaseq checkpoint to any FSDP and model-parallel degree");
  cmd->add_option("input", o->in,
                  "Checkpoint folder or path prefix (raw shards, released files, unflattened parts or a singleton)")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output folder: new or empty; it appears only once every shard is complete")
      ->required();
  cmd->add_option("--fsdp", o->fsdp, "FSDP shards per model part")->capture_default_str();
  cmd->add_option("--mp", o->mp, "Model-parallel parts (must divide heads, FFN and vocabulary)")->capture_default_str();
  cmd->add_flag("--drop-optimizer-state", o->drop, "Do not write last_optimizer_state");
  cmd->add_option("--prefix", o->prefix, "Output file prefix")->capture_default_str();
  add_plan_options(cmd, *o, "Cast floating-point weights: f32, f16 or bf16 (optimizer moments stay as they are)");
  cmd->callback([o] {
    auto t0 = std::chrono::steady_clock::now();
    ckpt::ReshardOptions ro;
    ro.input = o->in;
    ro.outdir = o->out;
    ro.fsdp = o->fsdp;
    ro.mp = o->mp;
    ro.drop_optimizer_state = o->drop;
    ro.prefix = o->prefix;
    ro.threads = plan_threads(*o);
    ro.dtype = plan_dtype(*o);
    ckpt::Plan plan = ckpt::plan_reshard(ro);
    uint64_t bytes = run_plan(plan, *o);
    if (o->dry_run) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %zu files to %s: %lld part(s) x %lld shard(s), %s in %.2f s (%s/s)\n", plan.outputs.size(),
                o->out.c_str(), (long long)o->mp, (long long)o->fsdp, human_bytes(bytes).c_str(), s,
                human_bytes(s > 0 ? uint64_t(double(bytes) / s) : 0).c_str());
  });
}

}  // namespace optforge::cli
