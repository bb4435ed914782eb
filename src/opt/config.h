// What every layer of optforge must agree on about an OPT model: the published sizes, and one
// config for everything transformers' OPTConfig (and a metaseq cfg) can say about the
// architecture. Readers fill it from a config.json / metaseq cfg and the tensors; the tensor
// table (opt/roles.h), the forward pass and every writer read it. Depends on nothing above
// tensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace optforge {

// OPT's learned positions are looked up at (position + 2): rows 0 and 1 of the table are never
// used by real tokens (row 1 is where HF/metaseq padding lands). The one place this is named.
inline constexpr int64_t kPositionOffset = 2;

// The FFN activation (OPTConfig.activation_function / metaseq cfg activation_fn).
enum class Activation {
  Relu,      // "relu" (every released OPT)
  Gelu,      // "gelu": x * Phi(x) with erf (torch.nn.functional.gelu)
  GeluTanh,  // "gelu_new" in transformers, "gelu_accurate" in metaseq/fairseq: the tanh form
};
const char* hf_activation_name(Activation a);       // "relu", "gelu", "gelu_new"
const char* metaseq_activation_name(Activation a);  // "relu", "gelu", "gelu_accurate"
// Accepts either spelling; nullopt for anything else (the caller names the file).
std::optional<Activation> activation_from_name(const std::string& s);

struct OptConfig {
  std::string name;              // "125m", ... or "custom"
  int64_t layers = 0;            // L
  int64_t embed_dim = 0;         // E (hidden size)
  int64_t ffn_dim = 0;           // F
  int64_t heads = 0;             // H
  int64_t input_dim = 0;         // Ein (word_embed_proj_dim): != E only for 350m
  int64_t vocab = 50272;         // V, padded to a multiple of 8
  int64_t max_positions = 2048;  // T; the positions table has T + kPositionOffset rows
  bool pre_ln = true;            // do_layer_norm_before (false for 350m)
  // The architecture switches of OPTConfig (defaults: the released models).
  Activation activation = Activation::Relu;
  bool enable_bias = true;         // q/k/v/out_proj, fc1, fc2 have biases (never project_in/out)
  bool ln_affine = true;           // layer_norm_elementwise_affine: every LN has weight and bias
  bool remove_final_norm = false;  // _remove_final_layer_norm: pre-LN without the final LN
  int64_t pad_token_id = 1, bos_token_id = 2, eos_token_id = 2;

  int64_t head_dim() const { return embed_dim / heads; }
  bool has_projections() const { return input_dim != embed_dim; }
  // OPTDecoder.final_layer_norm exists: pre-LN and not removed.
  bool has_final_norm() const { return pre_ln && !remove_final_norm; }
  int64_t position_rows() const { return max_positions + kPositionOffset; }
  // True when every switch is as in the released models (relu, biases, affine LNs, final LN
  // with pre-LN): what alpa's layouts assume.
  bool plain() const { return activation == Activation::Relu && enable_bias && ln_affine && !remove_final_norm; }
  int64_t parameter_count() const;
  // Throws optforge::Error unless the dimensions are consistent (E divisible by H, ...).
  void validate() const;
  // Throws optforge::Error, naming `source` (the checkpoint), unless pad, bos and eos are ids in
  // [0, vocab): running the model needs them (bos starts prompts, eos ends samples); conversion
  // carries any value through unchecked, as transformers does.
  void validate_token_ids(const std::string& source) const;
};

// The released family (metaseq/launcher/opt_job_constants.py); nullopt for unknown names.
std::optional<OptConfig> published_opt_config(const std::string& name);
std::vector<std::string> published_opt_names();
// The published model `c` is ("125m", ...): every dimension (L, E, F, Ein, V, T), pre-LN and
// the released switches (plain()) equal, and the head count too when `c.heads` > 0 (0: not
// known, as in checkpoints that do not record it). nullopt for any other model.
std::optional<std::string> published_match(const OptConfig& c);

}  // namespace optforge
