#include "plan_options.h"

#include "util/error.h"
#include "util/parallel_for.h"
#include "util/progress.h"

namespace optforge::cli {

void add_plan_options(CLI::App* cmd, PlanOptions& o, const std::string& dtype_help) {
  cmd->add_option("--dtype", o.dtype, dtype_help);
  cmd->add_option("-j,--threads", o.threads, "Threads (default: all cores)");
  cmd->add_flag("--dry-run", o.dry_run, "Print the plan (inputs, outputs, bytes) and write nothing");
  cmd->add_flag("--strict-replicas", o.strict, "Fail if a replicated tensor differs between model parts");
  cmd->add_flag("-q,--quiet", o.quiet, "No progress bar");
}

int plan_threads(const PlanOptions& o) { return o.threads > 0 ? o.threads : hardware_threads(); }

std::optional<DType> plan_dtype(const PlanOptions& o) {
  if (o.dtype.empty()) return std::nullopt;
  auto d = dtype_from_name(o.dtype);
  if (!d || !is_floating(*d)) throw Error("--dtype must be f32, f16 or bf16, got '" + o.dtype + "'");
  return d;
}

uint64_t run_plan(ckpt::Plan& plan, const PlanOptions& o) {
  ckpt::ExecOptions eo;
  eo.threads = plan_threads(o);
  eo.dry_run = o.dry_run;
  eo.strict_replicas = o.strict;
  eo.progress = !o.quiet && Progress::stderr_is_terminal();
  return ckpt::execute(plan, eo);
}

}  // namespace optforge::cli
