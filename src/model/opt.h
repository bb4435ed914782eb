// The OPT decoder (125M to 175B shapes, including 350M's post-LN block with project_in/out) as a
// composition of backend operations. One `forward` serves prefill, incremental decoding and
// batches of sequences of different lengths: each sequence advances its own KV cache entry.
#pragma once

#include <memory>
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
  KvCache make_cache(int64_t sequences, int64_t capacity) { return KvCache(backend_, config_, sequences, capacity); }

  enum class Logits { Last, All };
  // Appends the batch's tokens to their sequences in `cache` and returns logits [rows, V]:
  // one row per sequence of the batch (its last new token) or one per new token.
  std::vector<float> forward(KvCache& cache, const std::vector<SeqTokens>& batch, Logits which = Logits::Last);

 private:
  struct Layer {
    Weight q_w, q_b, k_w, k_b, v_w, v_b, out_w, out_b;
    Weight attn_norm_w, attn_norm_b;  // self_attn_layer_norm
    Weight fc1_w, fc1_b, fc2_w, fc2_b;
    Weight ffn_norm_w, ffn_norm_b;    // the layer's final_layer_norm
  };

  Act embed(const Step& step);
  Act self_attention(const Layer& L, int64_t layer, const Act& x, const Step& step, KvCache& cache);
  Act feed_forward(const Layer& L, const Act& x);
  void decoder_layer(const Layer& L, int64_t layer, Act& x, const Step& step, KvCache& cache);
  Act lm_head(const Act& x);

  Act linear(const Act& x, const Weight& w, const Weight* b);
  Act norm(const Act& x, const Weight& g, const Weight& b);

  OptConfig config_;
  Backend& backend_;
  Weight embed_tokens_, embed_positions_, project_in_, project_out_, final_norm_w_, final_norm_b_, head_;
  std::vector<Layer> layers_;
};

}  // namespace optforge
