// optforge reshard IN -o OUTDIR --fsdp N --mp M: a metaseq checkpoint to M model parts x N FSDP
// shards, written as metaseq's trainer writes raw shards (flat params, padding, shard_metadata).
#include <chrono>
#include <cstdio>

#include "checkpoint/reshard.h"
#include "commands.h"
#include "util/error.h"
#include "util/human.h"
#include "util/progress.h"
#include "util/thread_pool.h"

namespace optforge::cli {

void register_reshard(CLI::App& app) {
  struct Options {
    std::string in, out, dtype, prefix = "checkpoint_last";
    int64_t fsdp = 1, mp = 1;
    bool drop = false, dry_run = false, strict = false, quiet = false;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("reshard", "Reshard a metaseq checkpoint to any FSDP and model-parallel degree");
  cmd->add_option("input", o->in, "Checkpoint folder or path prefix (raw shards, released files, unflattened parts or a singleton)")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output folder (created; must not hold another checkpoint)")->required();
  cmd->add_option("--fsdp", o->fsdp, "FSDP shards per model part")->capture_default_str();
  cmd->add_option("--mp", o->mp, "Model-parallel parts (must divide heads, FFN and vocabulary)")->capture_default_str();
  cmd->add_flag("--drop-optimizer-state", o->drop, "Do not write last_optimizer_state");
  cmd->add_option("--dtype", o->dtype, "Cast floating-point weights: f32, f16 or bf16 (optimizer moments stay as they are)");
  cmd->add_option("--prefix", o->prefix, "Output file prefix")->capture_default_str();
  cmd->add_option("-j,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_flag("--dry-run", o->dry_run, "Print the plan (inputs, outputs, bytes) and write nothing");
  cmd->add_flag("--strict-replicas", o->strict, "Fail if a replicated tensor differs between model parts");
  cmd->add_flag("-q,--quiet", o->quiet, "No progress bar");
  cmd->callback([o] {
    auto t0 = std::chrono::steady_clock::now();
    ckpt::ReshardOptions ro;
    ro.input = o->in;
    ro.outdir = o->out;
    ro.fsdp = o->fsdp;
    ro.mp = o->mp;
    ro.drop_optimizer_state = o->drop;
    ro.prefix = o->prefix;
    ro.threads = o->threads > 0 ? o->threads : hardware_threads();
    if (!o->dtype.empty()) {
      ro.dtype = dtype_from_name(o->dtype);
      if (!ro.dtype || !is_floating(*ro.dtype)) throw Error("--dtype must be f32, f16 or bf16, got '" + o->dtype + "'");
    }
    ckpt::Plan plan = ckpt::plan_reshard(ro);
    ckpt::ExecOptions eo;
    eo.threads = ro.threads;
    eo.dry_run = o->dry_run;
    eo.strict_replicas = o->strict;
    eo.progress = !o->quiet && Progress::stderr_is_terminal();
    uint64_t bytes = ckpt::execute(plan, eo);
    if (o->dry_run) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %zu files to %s: %lld part(s) x %lld shard(s), %s in %.2f s (%s/s)\n", plan.outputs.size(),
                o->out.c_str(), (long long)o->mp, (long long)o->fsdp, human_bytes(bytes).c_str(), s,
                human_bytes(s > 0 ? uint64_t(double(bytes) / s) : 0).c_str());
  });
}

}  // namespace optforge::cli
