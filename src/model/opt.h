// The OPT decoder as a composition of backend operations: one decoder whose architecture
// switches come from OptConfig as transformers' OPTConfig states them (pre-/post-LN, relu/gelu,
// biases, affine layer norms, project_in/out, the final LN), with every optional weight optional.
// One `forward` serves prefill, incremental decoding and batches of sequences of different
// lengths: each sequence advances its own KV cache entry.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <vector>

#include "model/backend.h"
#include "model/kv_cache.h"
#include "model/step.h"
#include "model/weights.h"

namespace optforge {

class OptModel {
 public:
  OptModel(const OptWeights& weights, Backend& backend);

  const OptConfig& config() const { return config_; }
  Backend& backend() { return backend_; }
  // A paged KV cache (model/kv_cache.h) for `sequences` sequences of at most `capacity` tokens, over
  // `blocks` blocks (0: each sequence's full capacity).
  KvCache make_cache(int64_t sequences, int64_t capacity, int64_t blocks = 0) {
    return KvCache(backend_, config_, sequences, capacity, blocks);
  }

  enum class Logits { Last, All };
  // Appends the batch's tokens to their sequences in `cache` and returns logits [rows, V]:
  // one row per sequence of the batch (its last new token) or one per new token.
  std::vector<float> forward(KvCache& cache, const std::vector<SeqTokens>& batch, Logits which = Logits::Last);

 private:
  // One weight per role; null where the model has none (see RoleTensors).
  using RoleWeights = std::array<Weight, kRoleCount>;

  Act embed(const Step& step);
  Act self_attention(const RoleWeights& L, int64_t layer, const Act& x, const Step& step, KvCache& cache);
  Act feed_forward(const RoleWeights& L, const Act& x);
  void decoder_layer(const RoleWeights& L, int64_t layer, Act& x, const Step& step, KvCache& cache);
  Act lm_head(const Act& x);

  // y = x·wᵀ + b (no bias role, or none stored under it: no bias)
  Act linear(const Act& x, const RoleWeights& W, Role w, std::optional<Role> b);
  // LayerNorm with weight/bias of roles g, b (null when layer_norm_elementwise_affine is false)
  Act norm(const Act& x, const RoleWeights& W, Role g, Role b);

  OptConfig config_;
  Backend& backend_;
  RoleWeights model_;
  std::vector<RoleWeights> layers_;
};

}  // namespace optforge
