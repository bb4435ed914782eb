#include "model/opt.h"

#include <cmath>

namespace optforge {

namespace {
constexpr float kLayerNormEps = 1e-5f;  // torch's default, which OPT was trained with
}

OptModel::OptModel(const OptWeights& w, Backend& backend) : config_(w.config), backend_(backend) {
  auto up = [&](const Tensor& t) { return backend_.upload(t); };
  embed_tokens_ = up(w.embed_tokens);
  embed_positions_ = up(w.embed_positions);
  if (w.project_in) project_in_ = up(*w.project_in);
  if (w.project_out) project_out_ = up(*w.project_out);
  if (w.final_layer_norm_w) {
    final_norm_w_ = up(*w.final_layer_norm_w);
    final_norm_b_ = up(*w.final_layer_norm_b);
  }
  const bool tied = w.lm_head.storage == w.embed_tokens.storage && w.lm_head.offset == w.embed_tokens.offset;
  head_ = tied ? embed_tokens_ : up(w.lm_head);
  for (const OptLayerWeights& l : w.layers)
    layers_.push_back({up(l.q_proj_w), up(l.q_proj_b), up(l.k_proj_w), up(l.k_proj_b), up(l.v_proj_w), up(l.v_proj_b),
                       up(l.out_proj_w), up(l.out_proj_b), up(l.self_attn_layer_norm_w), up(l.self_attn_layer_norm_b),
                       up(l.fc1_w), up(l.fc1_b), up(l.fc2_w), up(l.fc2_b), up(l.final_layer_norm_w),
                       up(l.final_layer_norm_b)});
}

Act OptModel::linear(const Act& x, const Weight& w, const Weight* b) {
  Act y = backend_.alloc(x.rows, w->shape[0]);
  backend_.linear(x, w, b, y);
  return y;
}

Act OptModel::norm(const Act& x, const Weight& g, const Weight& b) {
  Act y = backend_.alloc(x.rows, x.cols);
  backend_.layer_norm(x, g, b, kLayerNormEps, y);
  return y;
}

// Token embeddings (350m: projected up from 512), plus learned positions. No sqrt(d) scaling.
Act OptModel::embed(const Step& step) {
  Act x = backend_.alloc(step.rows(), config_.input_dim);
  backend_.embedding(embed_tokens_, step.tokens, x);
  if (project_in_) x = linear(x, project_in_, nullptr);
  backend_.add_embedding(embed_positions_, step.positions, x);
  return x;
}

Act OptModel::self_attention(const Layer& L, int64_t layer, const Act& x, const Step& step, KvCache& cache) {
  Act q = linear(x, L.q_w, &L.q_b);
  Act k = linear(x, L.k_w, &L.k_b);
  Act v = linear(x, L.v_w, &L.v_b);
  // HF scales q after its bias and before q·kᵀ; the same order gives the same rounding.
  backend_.scale(q, 1.0f / std::sqrt(float(config_.head_dim())));
  Act o = backend_.alloc(x.rows, config_.embed_dim);
  backend_.attention(q, k, v, cache, layer, step, o);
  return linear(o, L.out_w, &L.out_b);
}

Act OptModel::feed_forward(const Layer& L, const Act& x) {
  Act h = linear(x, L.fc1_w, &L.fc1_b);
  backend_.relu(h);
  return linear(h, L.fc2_w, &L.fc2_b);
}

// Pre-LN (every OPT but 350m):  x = x + attn(LN(x));  x = x + ffn(LN(x))
// Post-LN (350m):               x = LN(x + attn(x));  x = LN(x + ffn(x))
void OptModel::decoder_layer(const Layer& L, int64_t layer, Act& x, const Step& step, KvCache& cache) {
  if (config_.pre_ln) {
    backend_.add(x, self_attention(L, layer, norm(x, L.attn_norm_w, L.attn_norm_b), step, cache));
    backend_.add(x, feed_forward(L, norm(x, L.ffn_norm_w, L.ffn_norm_b)));
  } else {
    backend_.add(x, self_attention(L, layer, x, step, cache));
    x = norm(x, L.attn_norm_w, L.attn_norm_b);
    backend_.add(x, feed_forward(L, x));
    x = norm(x, L.ffn_norm_w, L.ffn_norm_b);
  }
}

// Final norm (pre-LN models), project_out (350m: back to 512), then the tied output embedding.
Act OptModel::lm_head(const Act& x) {
  Act h = final_norm_w_ ? norm(x, final_norm_w_, final_norm_b_) : x;
  if (project_out_) h = linear(h, project_out_, nullptr);
  return linear(h, head_, nullptr);
}

std::vector<float> OptModel::forward(KvCache& cache, const std::vector<SeqTokens>& batch, Logits which) {
  const Step step = plan_step(cache, batch);
  if (step.rows() == 0) return {};
  cache.begin(step);
  Act x = embed(step);
  for (size_t l = 0; l < layers_.size(); ++l) decoder_layer(layers_[l], int64_t(l), x, step, cache);
  cache.commit(step);
  if (which == Logits::Last) {  // only each sequence's last token feeds the head while decoding
    std::vector<int64_t> last;
    for (const Step::Seq& s : step.seqs) last.push_back(s.row0 + s.rows - 1);
    Act picked = backend_.alloc(int64_t(last.size()), x.cols);
    backend_.gather_rows(x, last, picked);
    x = picked;
  }
  Act logits = lm_head(x);
  std::vector<float> out(size_t(logits.rows * logits.cols));
  backend_.read(logits, out.data());
  return out;
}

}  // namespace optforge
