// An OPT model as one stream of named tensors, whatever layout it came from: the meeting point
// of every reader and writer (N inputs + M outputs, not N x M converters). Names and order are
// those of a metaseq singleton (restored.pt) with q/k/v separate; tensors are zero-copy views
// of the inputs (or lazily generated), so a conversion never holds the model in memory.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "opt/config.h"
#include "pickle/value.h"

namespace optforge {

struct OptTensors {
  OptConfig config;
  std::vector<std::pair<std::string, Tensor>> tensors;  // canonical order, no decoder.version
  ValuePtr metaseq_root;  // the metaseq checkpoint's other top-level keys (cfg, ...), if any
  std::string layout;     // what the input was, for messages ("HF folder", "alpa numpy folder")
  std::shared_ptr<const void> keep_alive;  // whatever the tensors' bytes come from (a plan)
  // False only when read with heads_may_be_unknown and nothing told the head count:
  // config.heads is then a placeholder (1) that must not be used to run the model.
  bool heads_known = true;

  const Tensor& get(const std::string& name) const;
  DType dtype() const;  // the dtype of the weights (embed_tokens)
};

struct ReadModelOptions {
  // When the input does not record it (alpa folders, state dicts without a config.json):
  // 0 = the published OPT model of exactly this shape, if there is one; else an Error.
  int64_t heads = 0;
  bool heads_may_be_unknown = false;  // inspect: report an unknown head count instead of failing
  int threads = 1;           // reading a sharded checkpoint's files
};

// Reads any layout optforge knows: a sharded metaseq checkpoint (a folder, a prefix such as
// DIR/checkpoint_last, or one of its files; consolidated on the fly), a metaseq singleton .pt,
// an HF folder (safetensors or bin, single or sharded with an index), a .safetensors or .bin
// state dict, an alpa numpy folder.
// Checks that every tensor OPT needs is there with the right shape, and that nothing unknown is.
OptTensors read_opt_model(const std::string& path, const ReadModelOptions& opts = {});

// Builds an OptTensors from named tensors in metaseq singleton naming (fused qkv_proj accepted),
// inferring the shape from the tensors; `heads` from the caller's config. heads = 0: those of the
// published OPT model with exactly this shape (every dimension), else an Error asking for
// --heads; heads = -1: the same, but an unknown count gives heads_known = false, not an Error.
OptTensors opt_model_from_metaseq(std::vector<std::pair<std::string, Tensor>> named, int64_t heads,
                                const std::string& source);

}  // namespace optforge
