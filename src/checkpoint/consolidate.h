// consolidate: a sharded metaseq checkpoint (MP parts x FSDP shards, released flat files, or
// unflattened part files) into one singleton file whose `model` dict is metaseq's restored.pt
// (docs/spec-checkpoints.md §restored.pt order): the same keys in the same order, qkv split into
// k_proj/v_proj/q_proj, decoder.version last, no output_projection; cfg with
// model_parallel_size 1; the other top-level keys of part 0 / shard 0 (shard_metadata and the
// optimizer state dropped). Or, with no_stitch, one unflattened file per model part (fairscale's
// consolidate_shard_weights order, qkv fused), named OUT-model_part-K.pt.
#pragma once

#include <optional>
#include <string>

#include "checkpoint/plan.h"

namespace optforge::ckpt {

struct ConsolidateOptions {
  std::string input, output;
  bool no_stitch = false;
  std::optional<DType> dtype;  // cast floating-point model tensors on the way out
  int threads = 1;
};

Plan plan_consolidate(const ConsolidateOptions& o);

// metaseq restored.pt order of a glued singleton's keys (docs/spec-checkpoints.md §restored.pt order).
std::vector<size_t> restored_order(const std::vector<std::string>& names);

}  // namespace optforge::ckpt
