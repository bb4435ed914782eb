// reshard: any metaseq checkpoint (raw shards, released flat files, unflattened parts, or a
// singleton such as our consolidate output or restored.pt) to M model parts x W FSDP shards,
// written as metaseq's trainer writes raw shards: OUTDIR/<prefix>-model_part-K-shardR.pt with one
// flat parameter per FSDP instance (docs/spec-checkpoints.md §FSDP sharding and padding), freshly computed
// shard_metadata, cfg updated (model_parallel_size, world size, checkpoint suffix), and the
// optimizer state resharded with the weights (unless dropped). MP can be merged and split: each
// tensor is regrouped by the Megatron rules (megatron.h); a singleton's separate k/v/q
// projections are fused back into qkv_proj for Megatron models.
#pragma once

#include <optional>
#include <string>

#include "checkpoint/plan.h"

namespace optforge::ckpt {

struct ReshardOptions {
  std::string input, outdir;
  int64_t fsdp = 1, mp = 1;
  bool drop_optimizer_state = false;
  std::optional<DType> dtype;  // cast floating-point weights and buffers (not the fp32 moments)
  std::string prefix = "checkpoint_last";
  // false with fsdp == 1: "<prefix>-model_part-K.pt", the released reshard layout.
  bool shard_suffix = true;
  int threads = 1;
};

Plan plan_reshard(const ReshardOptions& o);

// The same code path for a state that is already in memory (e.g. the demo model: a metaseq
// singleton value tree whose storages may be generated on the fly): plans writing it as sharded
// metaseq files. `o.input` is unused. Run the plan with execute().
Plan plan_write_sharded(const ValuePtr& singleton_root, const ReshardOptions& o);

}  // namespace optforge::ckpt
