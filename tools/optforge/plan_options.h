// What consolidate and reshard share on the command line: how to run a planned checkpoint
// operation (threads, dry run, replica strictness, progress) and the --dtype cast.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "checkpoint/plan.h"

namespace optforge::cli {

struct PlanOptions {
  std::string dtype;
  bool dry_run = false, strict = false, quiet = false;
  int threads = 0;  // 0: every hardware thread
};

void add_plan_options(CLI::App* cmd, PlanOptions& o, const std::string& dtype_help);
int plan_threads(const PlanOptions& o);
std::optional<DType> plan_dtype(const PlanOptions& o);  // throws on a bad --dtype
// Executes (or, with --dry-run, prints) the plan; returns the bytes written.
uint64_t run_plan(ckpt::Plan& plan, const PlanOptions& o);

}  // namespace optforge::cli
