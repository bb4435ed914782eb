// An OPT model as one stream of named tensors, whatever layout it came from: the meeting point
// of every reader and writer (N inputs + M outputs, not N x M converters). Names and order are
// those of a metaseq singleton (restored.pt) with q/k/v separate; tensors are zero-copy views
// of the inputs (or lazily generated), so a conversion never holds the model in memory.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "opt/config.h"
#include "opt/roles.h"
#include "pickle/value.h"

namespace optforge {

struct OptTensors {
  OptConfig config;
  std::vector<std::pair<std::string, Tensor>> tensors;  // canonical order, no decoder.version
  std::vector<RoleRef> roles;                           // the role of each of `tensors`
  // Quantized matrices (a stored quantized file, or convert --quantize): tensors[i] is then I8
  // [N, K] with scales.at(i) its F32 [N] row scales (tensor/quantize.h), or int4 U8 [N, K / 2]
  // with F16 [N, ceil(K / 32)] group scales (tensor/quantize_int4.h). Empty otherwise.
  std::map<size_t, Tensor> scales;
  // The dtype of the quantized matrices (I8 or U8; one scheme per model), F32 if none.
  DType dtype_of_quantized() const { return scales.empty() ? DType::F32 : tensors[scales.begin()->first].second.dtype; }
  ValuePtr metaseq_root;                   // the metaseq checkpoint's other top-level keys (cfg, ...), if any
  std::string layout;                      // what the input was, for messages ("HF folder", "alpa numpy folder")
  std::shared_ptr<const void> keep_alive;  // whatever the tensors' bytes come from (a plan)
  // False only when read with heads_may_be_unknown and nothing told the head count:
  // config.heads is then a placeholder (1) that must not be used to run the model.
  bool heads_known = true;

  // The tensor of a role (layer ignored for model roles); nullptr if the model has none.
  const Tensor* find(Role role, int64_t layer = -1) const;
  // The dtype of the weights (every tensor has the same one, int8 matrices apart; checked when
  // read).
  DType dtype() const;
  // The name of tensors[i] in another layout.
  std::string name_in(size_t i, Layout layout) const {
    return role_name(role_spec(roles[i].role), layout, roles[i].layer);
  }
};

struct ReadModelOptions {
  // When the input does not record it (alpa folders, state dicts without a config.json):
  // 0 = the published OPT model of exactly this shape, if there is one; else an Error.
  int64_t heads = 0;
  bool heads_may_be_unknown = false;  // inspect: report an unknown head count instead of failing
  int threads = 1;                    // reading a sharded checkpoint's files
};

// Reads any layout optforge knows: a sharded metaseq checkpoint (a folder, a prefix such as
// DIR/checkpoint_last, or one of its files; consolidated on the fly), a metaseq singleton .pt,
// an HF folder (safetensors or bin, single or sharded with an index), a .safetensors or .bin
// state dict, an alpa numpy folder.
// Checks that every tensor OPT needs is there with the right shape, and that nothing unknown is.
// Int8 matrices need their "<name>_scale" F32 [N] tensor beside them (tensor/quantize.h): a
// missing, misshapen or stray scale, or int8 outside the matmul weights, throws naming the file
// and tensor.
OptTensors read_opt_model(const std::string& path, const ReadModelOptions& opts = {});

// What an input's own config states (config.json, a metaseq cfg). Anything unset is read off
// the tensors present (biases, LN weights, the final LN), or is the released models' value.
struct SourceConfig {
  std::string file;              // what states it, named in errors about it ("" if nothing does)
  std::optional<int64_t> heads;  // unset: only a published OPT model of exactly this shape tells
  std::optional<Activation> activation;
  std::optional<bool> enable_bias, ln_affine, pre_ln, remove_final_norm;
  std::optional<int64_t> pad_token_id, bos_token_id, eos_token_id;
  // Sizes it states (config.json's num_hidden_layers, hidden_size, ffn_dim, vocab_size,
  // word_embed_proj_dim, max_position_embeddings): the tensors must agree.
  std::optional<int64_t> layers, embed_dim, ffn_dim, vocab, input_dim, max_positions;
};

// Builds an OptTensors from named tensors in any spelling opt/roles.h knows (metaseq with
// separate or fused qkv, HF with or without "model.", alpa file names), inferring the shape from
// the tensors. Checks that the sizes `sc` states agree with the tensors, and that exactly the
// tensors the config calls for are there, with their shapes and one dtype; throws naming
// `source` (or sc.file) and the tensor otherwise. An unstated head count is the published
// model's of exactly this shape; failing that, an Error asking for --heads, or with
// `heads_may_be_unknown` a placeholder and OptTensors::heads_known false.
OptTensors opt_model_from_named(std::vector<std::pair<std::string, Tensor>> named, const SourceConfig& sc,
                                const std::string& source, bool heads_may_be_unknown = false);

}  // namespace optforge
