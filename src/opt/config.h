// What every layer of optforge must agree on about an OPT model's shape: the published sizes,
// and the dimensions read from a metaseq cfg or an HF config. Depends on nothing above tensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace optforge {

struct OptConfig {
  std::string name;          // "125m", ... or "custom"
  int64_t layers = 0;        // L
  int64_t embed_dim = 0;     // E (hidden size)
  int64_t ffn_dim = 0;       // F
  int64_t heads = 0;         // H
  int64_t input_dim = 0;     // Ein (word_embed_proj_dim): != E only for 350m
  int64_t vocab = 50272;     // V, padded to a multiple of 8
  int64_t max_positions = 2048;  // T; the positions table has T + 2 rows
  bool pre_ln = true;        // do_layer_norm_before (false for 350m)

  int64_t head_dim() const { return embed_dim / heads; }
  bool has_projections() const { return input_dim != embed_dim; }
  int64_t parameter_count() const;
  // Throws optforge::Error unless the dimensions are consistent (E divisible by H, ...).
  void validate() const;
};

// The released family (metaseq/launcher/opt_job_constants.py); nullopt for unknown names.
std::optional<OptConfig> published_opt_config(const std::string& name);
std::vector<std::string> published_opt_names();

}  // namespace optforge
