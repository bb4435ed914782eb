#include "serve/sample_decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace optforge::serve {

SampleDecoder::SampleDecoder(const JobSpec& spec, int64_t sample, int64_t budget, const Tokenizer& tok)
    // Sample i's generator is seeded as generate() seeds it, so seeds reproduce across both.
    : spec_(spec), tok_(tok), budget_(budget), rng_(spec.opts.sampling.seed + uint64_t(sample) * 0x9E3779B97F4A7C15ull),
      history_(spec.prompt) {
  if (budget_ <= 0) finished_ = true;
}

SampleDecoder::Step SampleDecoder::next(const std::vector<float>& raw) {
  Step out;
  const GenerateOptions& o = spec_.opts;
  std::vector<float> scores = raw;
  const int64_t V = int64_t(scores.size());
  for (const auto& [id, bias] : spec_.logit_bias)
    if (id >= 0 && id < V) scores[size_t(id)] += bias;
  if (spec_.presence_penalty != 0 || spec_.frequency_penalty != 0)
    for (const auto& [id, count] : counts_)
      scores[size_t(id)] -= spec_.frequency_penalty * float(count) + spec_.presence_penalty;
  if (generated() < spec_.min_tokens && o.eos >= 0 && o.eos < V) scores[size_t(o.eos)] = -std::numeric_limits<float>::infinity();
  process_logits(scores, history_, o.sampling);
  const int32_t id = choose_token(scores, o.sampling.greedy(), rng_);
  if (o.stop_at_eos && id == o.eos) {
    finished_ = true;
    finish_reason_ = "stop";
    return out;
  }
  if (spec_.logprobs) {
    const std::vector<float> lp = log_softmax(raw.data(), V);
    out.token = GeneratedToken{id, lp[size_t(id)], top_logprobs(lp, o.top_logprobs)};
  } else {
    out.token = GeneratedToken{id, std::nullopt, {}};  // nobody asked: skip the log-softmax
  }
  history_.push_back(id);
  ids_.push_back(id);
  ++counts_[id];

  text_ = tok_.decode(ids_);
  size_t final_len = text_.size() - unstable_tail(text_, o.stop);
  size_t cut = std::string::npos;  // the earliest stop sequence, searched from just before the new text
  for (const std::string& st : o.stop)
    cut = std::min(cut, text_.find(st, emitted_ > st.size() ? emitted_ - st.size() : 0));
  if (cut != std::string::npos) {
    text_.resize(cut);
    final_len = cut;
    finished_ = true;
    finish_reason_ = "stop";
  }
  final_len = std::max(final_len, emitted_);
  if (final_len > emitted_) out.text = text_.substr(emitted_, final_len - emitted_);
  emitted_ = final_len;
  if (!finished_ && generated() >= budget_) finished_ = true;  // "length"
  return out;
}

std::string SampleDecoder::rest() {
  std::string r = emitted_ < text_.size() ? text_.substr(emitted_) : std::string();
  emitted_ = text_.size();
  return r;
}

}  // namespace optforge::serve
