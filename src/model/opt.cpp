#include "model/opt.h"

#include <cmath>

namespace optforge {

namespace {
constexpr float kLayerNormEps = 1e-5f;  // torch's default, which OPT was trained with
}

OptModel::OptModel(const OptWeights& w, Backend& backend) : config_(w.config), backend_(backend) {
  const RoleTensors none;
  auto up = [&](const RoleTensors& ts, const RoleTensors& scales) {
    RoleWeights out;
    for (size_t r = 0; r < kRoleCount; ++r)
      if (ts[r]) out[r] = backend_.upload(*ts[r], scales[r] ? &*scales[r] : nullptr);
    return out;
  };
  model_ = up(w.model, w.model_scales);
  model_[size_t(Role::LmHead)] = model_[size_t(Role::TokenEmbed)];  // tied
  for (size_t l = 0; l < w.layers.size(); ++l)
    layers_.push_back(up(w.layers[l], l < w.layer_scales.size() ? w.layer_scales[l] : none));
}

Act OptModel::linear(const Act& x, const RoleWeights& W, Role w, std::optional<Role> b) {
  const Weight& wt = W[size_t(w)];
  const Weight& bias = b ? W[size_t(*b)] : Weight();
  Act y = backend_.alloc(x.rows, wt->shape[0]);
  backend_.linear(x, wt, bias ? &bias : nullptr, y);
  return y;
}

Act OptModel::norm(const Act& x, const RoleWeights& W, Role g, Role b) {
  Act y = backend_.alloc(x.rows, x.cols);
  backend_.layer_norm(x, W[size_t(g)], W[size_t(b)], kLayerNormEps, y);
  return y;
}

// Token embeddings (350m: projected up from 512), plus learned positions. No sqrt(d) scaling.
Act OptModel::embed(const Step& step) {
  Act x = backend_.alloc(step.rows(), config_.input_dim);
  backend_.embedding(model_[size_t(Role::TokenEmbed)], step.tokens, x);
  if (config_.has_projections()) x = linear(x, model_, Role::ProjectIn, std::nullopt);
  backend_.add_embedding(model_[size_t(Role::Positions)], step.positions, x);
  return x;
}

Act OptModel::self_attention(const RoleWeights& L, int64_t layer, const Act& x, const Step& step, KvCache& cache) {
  Act q = linear(x, L, Role::QWeight, Role::QBias);
  Act k = linear(x, L, Role::KWeight, Role::KBias);
  Act v = linear(x, L, Role::VWeight, Role::VBias);
  // HF scales q after its bias and before q·kᵀ; the same order gives the same rounding.
  backend_.scale(q, 1.0f / std::sqrt(float(config_.head_dim())));
  Act o = backend_.alloc(x.rows, config_.embed_dim);
  backend_.attention(q, k, v, cache, layer, step, o);
  return linear(o, L, Role::OutWeight, Role::OutBias);
}

Act OptModel::feed_forward(const RoleWeights& L, const Act& x) {
  Act h = linear(x, L, Role::Fc1Weight, Role::Fc1Bias);
  backend_.activation(h, config_.activation);
  return linear(h, L, Role::Fc2Weight, Role::Fc2Bias);
}

// Pre-LN (every OPT but 350m):  x = x + attn(LN(x));  x = x + ffn(LN(x))
// Post-LN (350m):               x = LN(x + attn(x));  x = LN(x + ffn(x))
void OptModel::decoder_layer(const RoleWeights& L, int64_t layer, Act& x, const Step& step, KvCache& cache) {
  if (config_.pre_ln) {
    backend_.add(x, self_attention(L, layer, norm(x, L, Role::AttnNormWeight, Role::AttnNormBias), step, cache));
    backend_.add(x, feed_forward(L, norm(x, L, Role::FfnNormWeight, Role::FfnNormBias)));
  } else {
    backend_.add(x, self_attention(L, layer, x, step, cache));
    x = norm(x, L, Role::AttnNormWeight, Role::AttnNormBias);
    backend_.add(x, feed_forward(L, x));
    x = norm(x, L, Role::FfnNormWeight, Role::FfnNormBias);
  }
}

// Final norm (pre-LN models unless removed), project_out (350m: back to 512), then the tied
// output embedding.
Act OptModel::lm_head(const Act& x) {
  Act h = config_.has_final_norm() ? norm(x, model_, Role::FinalNormWeight, Role::FinalNormBias) : x;
  if (config_.has_projections()) h = linear(h, model_, Role::ProjectOut, std::nullopt);
  return linear(h, model_, Role::LmHead, std::nullopt);
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
