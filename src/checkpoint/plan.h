// A checkpoint operation planned before any tensor data is read: the inputs, the output files (value
// trees whose tensors are byte producers over the inputs), and the replicated tensors to compare.
// Executing a plan cuts the outputs into independent units (byte ranges of storage records, see
// writer.h) that threads run in any order today and MPI ranks can split later.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/fsdp.h"
#include "checkpoint/writer.h"

namespace optforge::ckpt {

struct Plan {
  std::string operation;                    // "consolidate", "reshard"
  std::shared_ptr<LoadedCheckpoint> input;  // keeps the mappings alive
  std::vector<std::shared_ptr<PartModel>> parts;
  std::vector<std::string> notes;  // printed with the plan
  std::vector<OutputSpec> outputs;
  ProducerMap producers;
  // Replicated tensors (one entry per tensor: its P part tensors) compared before writing.
  std::vector<std::vector<const PartTensor*>> replica_checks;
  // Set when the outputs are the files of one folder (reshard): execute() writes them into a
  // temporary folder renamed to output_dir only when all are complete (io/atomic_dir.h), so the
  // folder must be new or empty. Empty: the outputs are files committed together (AtomicFile).
  std::string output_dir;
};

struct ExecOptions {
  int threads = 1;
  bool dry_run = false;
  bool progress = false;         // draw a progress bar (callers pass "stderr is a terminal")
  bool strict_replicas = false;  // a replicated tensor that differs across parts is an error
  uint64_t unit_bytes = uint64_t(64) << 20;
  FILE* out = stdout;  // plan and summary
};

// Prints the plan (dry run), or runs it: replica checks, then every output unit, then commits
// all outputs together. Returns the bytes written.
uint64_t execute(Plan& plan, const ExecOptions& opts);
// The replicated-tensor comparison execute() starts with (for callers that stream a plan's
// outputs themselves, like convert): warns, or throws with strict_replicas.
void check_replicas(const Plan& plan, const ExecOptions& opts);

// Shared by consolidate and reshard.
ValuePtr copy_tree(const ValuePtr& v);                                    // containers copied, leaves shared
void set_field(const ValuePtr& obj, const std::string& key, ValuePtr v);  // dict or Namespace state
std::shared_ptr<LoadedCheckpoint> open_input(const std::string& in, int threads);
MetaseqCfg input_dims(const LoadedCheckpoint& ck);
// Parts read and checked to hold the same parameter names in the same order.
std::vector<std::shared_ptr<PartModel>> read_parts(const LoadedCheckpoint& ck, const MetaseqCfg& d, bool optimizer,
                                                   int threads);
// The tensor `name` of every part.
std::vector<const PartTensor*> across_parts(const std::vector<std::shared_ptr<PartModel>>& parts, size_t index);
std::vector<const PartTensor*> buffers_across_parts(const std::vector<std::shared_ptr<PartModel>>& parts, size_t index);

}  // namespace optforge::ckpt
