// Finding a metaseq checkpoint on disk: all model parts and FSDP shards of one save, by metaseq's
// naming (docs/spec-checkpoints.md §File names), checked to be a complete, consistent set.
//
// Names are parsed with one anchored regex on the file name:
//   <prefix>[-model_part-<K>][-shard<R>].pt
// which also covers released files (reshard-model_part-K.pt, reshard.pt) and odd names seen in
// the wild (checkpoint_1_6000.pt-model_part-0.pt: prefix "checkpoint_1_6000.pt").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "formats/torch_file.h"
#include "opt/config.h"

namespace optforge::ckpt {

struct ParsedName {
  std::string prefix;
  std::optional<int64_t> part, shard;
};
// nullopt if the name (a file name, no folder) is not "<prefix>[-model_part-K][-shardR].pt".
std::optional<ParsedName> parse_checkpoint_name(const std::string& file_name);

struct CheckpointFiles {
  std::string dir, prefix;
  bool part_suffix = false, shard_suffix = false;
  // paths[part][shard], every part has the same number of shards.
  std::vector<std::vector<std::string>> paths;
  int64_t parts() const { return int64_t(paths.size()); }
  int64_t shards() const { return paths.empty() ? 0 : int64_t(paths[0].size()); }
};

// `in`: a folder (holding one checkpoint, or checkpoint_last*, or reshard*), or a path prefix
// ("DIR/checkpoint_last", "DIR/reshard.pt"). Throws a clear error for a missing or duplicate
// shard, a part without shards, or different shard counts across parts.
CheckpointFiles find_checkpoint(const std::string& in);

// The fields of a metaseq cfg optforge reads, as stated: nullopt when absent or of another type
// (an int field also takes a bool, a bool field an int, as Python would). The one reader of
// cfg (docs/spec-checkpoints.md §cfg fields read): surgery, the model readers and the HF writer.
struct CfgFields {
  std::optional<int64_t> decoder_layers, decoder_embed_dim, decoder_attention_heads, decoder_ffn_embed_dim,
      decoder_input_dim, max_target_positions, tokens_per_sample;
  std::optional<bool> decoder_normalize_before, no_decoder_final_norm;
  // As written: only what runs or converts the model needs it to be one optforge implements.
  std::optional<std::string> activation_fn;
  std::optional<double> dropout, attention_dropout;
  std::optional<int64_t> model_parallel_size;     // cfg.model, else cfg.common
  std::optional<int64_t> distributed_world_size;  // cfg.distributed_training, else cfg.model
  std::string arch;                               // cfg.model.arch, else its _name; "" if neither
};
// The model fields come from cfg['model'] (a Namespace or dict); without one, from a flat cfg
// Namespace, else from very old files' top-level 'args' Namespace. nullopt when the checkpoint's
// top-level dict (`root`) has neither cfg nor args.
std::optional<CfgFields> read_cfg_fields(const ValuePtr& root);

// What a metaseq cfg states about the model (its vocab is not in cfg: the embedding says), and
// how the run stored it.
struct MetaseqCfg {
  OptConfig config;       // layers, dims, heads, positions, pre-LN, final LN (not the activation)
  bool fused_qkv = true;  // Megatron model (qkv_proj); transformer_lm_gpt has k/v/q_proj
  std::optional<int64_t> model_parallel_size, world_size;
  std::string arch;
};
// `root`: a checkpoint file's top-level dict. Throws (naming `file`) if it has no cfg or the cfg
// lacks the dimensions. The activation is not read: surgery moves tensors whatever it is.
MetaseqCfg dims_from_cfg(const ValuePtr& root, const std::string& file);

// Every file of a checkpoint, loaded (pickles parsed, tensors viewing the mmapped data).
struct LoadedCheckpoint {
  CheckpointFiles files;
  std::vector<std::vector<std::shared_ptr<TorchFile>>> shards;  // [part][shard]
  const TorchFile& first() const { return *shards[0][0]; }
};
// Loads every file (threads: how many at once) and checks that they belong to one save: the
// same cfg['model'] (apart from per-rank fields), the same number of updates, and a
// model_parallel_size / world size in cfg that agrees with the parts and shards found.
LoadedCheckpoint load_checkpoint(const CheckpointFiles& files, int threads);

// Removes FSDP wrapper components ("_fsdp_wrapped_module", "_fpw_module") from a dotted name.
std::string clean_fsdp_name(const std::string& name);

}  // namespace optforge::ckpt
