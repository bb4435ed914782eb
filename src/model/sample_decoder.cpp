#include "model/sample_decoder.h"

#include <limits>

#include "util/error.h"

namespace optforge {

SampleDecoder::SampleDecoder(const GenerateOptions& opts, SampleControls controls, int32_t eos,
                             const std::vector<int32_t>& prompt, int64_t sample, int64_t budget, TokenBytes token_bytes)
    : opts_(opts),
      controls_(std::move(controls)),
      eos_(eos),
      budget_(budget),
      rng_(opts.sampling.seed + uint64_t(sample) * 0x9E3779B97F4A7C15ull),  // golden-ratio stride: unrelated streams
      history_(prompt) {
  if (!opts.stop.empty() && !token_bytes) throw Error("stop sequences need a tokenizer");
  if (token_bytes) text_.emplace(std::move(token_bytes), opts.stop);
  if (budget_ <= 0) finished_ = true;
}

int32_t SampleDecoder::choose(const float* raw, int64_t V) {
  std::vector<float> scores(raw, raw + V);
  for (const auto& [id, bias] : controls_.logit_bias)
    if (id >= 0 && id < V) scores[size_t(id)] += bias;
  if (controls_.presence_penalty != 0 || controls_.frequency_penalty != 0)
    for (const auto& [id, count] : counts_)
      scores[size_t(id)] -= controls_.frequency_penalty * float(count) + controls_.presence_penalty;
  if (generated_ < controls_.min_tokens && eos_ >= 0 && eos_ < V)
    scores[size_t(eos_)] = -std::numeric_limits<float>::infinity();
  process_logits(scores, history_, opts_.sampling);
  return choose_token(scores, opts_.sampling.greedy(), rng_);
}

SampleDecoder::Step SampleDecoder::next(const float* raw, int64_t V) {
  Step out;
  if (finished_) throw Error("SampleDecoder::next called after the sample finished");
  const int32_t id = choose(raw, V);
  if (opts_.stop_at_eos && id == eos_) {
    finished_ = true;
    finish_reason_ = "stop";
    return out;
  }
  if (controls_.logprobs) {
    const std::vector<float> lp = log_softmax(raw, V);
    out.token = GeneratedToken{id, lp[size_t(id)], top_logprobs(lp, opts_.top_logprobs)};
  } else {
    out.token = GeneratedToken{id, std::nullopt, {}};  // nobody asked: skip the log-softmax
  }
  history_.push_back(id);
  ++counts_[id];
  ++generated_;
  if (text_) {
    out.text = text_->push(id);
    if (text_->stopped()) finished_ = true, finish_reason_ = "stop";
  }
  if (generated_ >= budget_) finished_ = true;  // "length", unless a stop sequence ended it
  return out;
}

std::string SampleDecoder::rest() {
  if (!text_) return {};
  std::string out = text_->finish();
  if (text_->stopped()) finish_reason_ = "stop";  // the last character's U+FFFD completed a stop sequence
  return out;
}

std::vector<GeneratedToken> prompt_logprobs(const std::vector<int32_t>& prompt, const float* logits, int64_t vocab,
                                            int64_t top) {
  std::vector<GeneratedToken> out;
  if (prompt.empty()) return out;
  out.push_back({prompt[0], std::nullopt, {}});
  for (size_t i = 1; i < prompt.size(); ++i) {
    const std::vector<float> lp = log_softmax(logits + (i - 1) * size_t(vocab), vocab);
    out.push_back({prompt[i], lp[size_t(prompt[i])], top_logprobs(lp, top)});
  }
  return out;
}

}  // namespace optforge
