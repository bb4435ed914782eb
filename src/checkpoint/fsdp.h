// FSDP flat parameters (fairscale FlattenParamsWrapper + FullyShardedDataParallel; docs/spec-checkpoints.md
// §FSDP flattening, §Consolidating FSDP shards): reading one model part, whatever form it is in, as a list of
// named parameters whose bytes are producers over the mmapped shards, and the sharding rule used
// to write flat parameters again.
//
// Accepted forms of a part:
//  - W raw trainer shards with shard_metadata: each rank's flat tensor loses ITS OWN padding (the
//    per-rank `padding` of its metadata; metaseq's merge strips only the last shard's), the
//    pieces are concatenated and split by `numels`;
//  - one flat file without shard_metadata (released reshard-model_part-K.pt): the layout is
//    rebuilt from cfg (docs/spec-checkpoints.md §Layout rebuilt from cfg) and must account for every element;
//  - one unflattened file (reshard_fsdp --unflatten-weights, no_stitch_megatron output).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/layout.h"
#include "checkpoint/producer.h"

namespace optforge::ckpt {

// Rank r's piece of a flat parameter of n elements sharded over W ranks (torch.chunk + pad):
// c = ceil(n / W) elements stored by every rank, of which `len` are real, then `pad` zeros.
struct ShardSpan {
  uint64_t begin = 0, len = 0, pad = 0;
  uint64_t stored() const { return len + pad; }
};
ShardSpan fsdp_shard(uint64_t n, int64_t world, int64_t rank);

// One flat parameter of one FSDP instance: what shard_metadata's params[flat_name] describes.
struct FlatLayout {
  std::string fsdp_path;  // "" for the root
  std::string flat_name = "flat_param_0";
  std::vector<std::string> names;  // relative to fsdp_path
  std::vector<Shape> shapes;
  bool no_broadcast_optim_state = false;
  ValuePtr shared_param_info;  // list of (src, dst) tuples, as in the metadata
  std::string key() const { return fsdp_path.empty() ? flat_name : fsdp_path + "." + flat_name; }
  std::string full_name(size_t i) const { return fsdp_path.empty() ? names[i] : fsdp_path + "." + names[i]; }
  uint64_t numel() const;
};

// metaseq's OPT layout (docs/spec-checkpoints.md §Layout rebuilt from cfg): root, then one instance per layer.
// `vocab_rows` is the part's embed_tokens rows (V / P).
std::vector<FlatLayout> layout_from_cfg(const MetaseqCfg& d, int64_t parts, int64_t vocab_rows);

// A named tensor of one model part; its bytes are a producer over the inputs.
struct PartTensor {
  std::string name;
  Shape shape;
  DType dtype = DType::F16;
  ProducerPtr bytes;
  std::string origin;  // file it comes from (for errors)
  uint64_t numel() const;
};

struct PartModel {
  std::string form;                 // "FSDP shards", "flat file without shard_metadata", "unflattened file"
  std::vector<FlatLayout> layout;   // how this part is flattened
  std::vector<PartTensor> params;   // every parameter, in layout order
  std::vector<PartTensor> buffers;  // decoder.version and other non-parameter entries
  // Optimizer state (empty if absent or not asked for): per state key with a per-element moment
  // ("exp_avg", ...), one tensor per parameter, parallel to `params` (unpadded, fp32).
  std::vector<std::pair<std::string, std::vector<PartTensor>>> moments;
  // Per flat parameter (layout index): the state entries that are not moments (step, ...).
  std::vector<ValuePtr> optim_scalars;
  ValuePtr optim_root;  // last_optimizer_state of shard 0 (param_groups, loss_scale)
  // Parameters by name.
  const PartTensor* find(const std::string& name) const;
};

// Reads part `part` of a loaded checkpoint. `optimizer`: also read last_optimizer_state.
PartModel read_part(const LoadedCheckpoint& ck, size_t part, const MetaseqCfg& dims, bool optimizer);

}  // namespace optforge::ckpt
