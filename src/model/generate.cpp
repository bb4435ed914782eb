#include "model/generate.h"

#include <algorithm>
#include <chrono>

#include "model/sample_decoder.h"
#include "util/error.h"

namespace optforge {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Appends final text to a sample's completion and hands it to on_text.
void emit(const GenerateCallbacks& cb, int64_t sample, Completion& out, const std::string& text) {
  if (text.empty()) return;
  out.text += text;
  if (cb.on_text) cb.on_text(sample, text);
}

}  // namespace

std::vector<Completion> generate(OptModel& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                 const TokenBytes& token_bytes, const GenerateCallbacks& cb, GenerateStats* stats) {
  if (prompt.empty()) throw Error("the prompt is empty");
  if (opts.n < 1) throw Error("n must be at least 1");
  const int64_t V = model.config().vocab;
  const int64_t max_len = model.config().max_positions;
  const int64_t budget = std::max<int64_t>(0, std::min(opts.max_tokens, max_len - int64_t(prompt.size())));
  if (int64_t(prompt.size()) > max_len)
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " +
                std::to_string(max_len));
  // The decoders first: they refuse bad stop sequences before the prefill's work.
  std::vector<SampleDecoder> samples;
  samples.reserve(size_t(opts.n));
  for (int64_t s = 0; s < opts.n; ++s)
    samples.emplace_back(opts, SampleControls{}, int32_t(model.config().eos_token_id), prompt, s, budget, token_bytes);
  KvCache cache = model.make_cache(opts.n, int64_t(prompt.size()) + budget);

  // Prefill once; every position's logits only when the prompt's logprobs are wanted.
  auto t0 = std::chrono::steady_clock::now();
  const auto which = opts.echo ? OptModel::Logits::All : OptModel::Logits::Last;
  std::vector<float> logits = model.forward(cache, {{0, prompt, {}}}, which);
  if (stats) stats->prompt_tokens = int64_t(prompt.size()), stats->prompt_seconds = seconds_since(t0);
  std::vector<Completion> result(size_t(opts.n));
  if (opts.echo) {
    const std::vector<GeneratedToken> echoed = prompt_logprobs(prompt, logits.data(), V, opts.top_logprobs);
    for (Completion& c : result) c.prompt = echoed;
    logits.erase(logits.begin(), logits.end() - V);
  }
  for (int64_t s = 1; s < opts.n; ++s) cache.fork(0, s);         // shares the prompt's blocks
  std::vector<std::vector<float>> next(size_t(opts.n), logits);  // every sample starts from the prompt

  t0 = std::chrono::steady_clock::now();
  for (;;) {
    std::vector<SeqTokens> batch;
    for (int64_t s = 0; s < opts.n; ++s) {
      SampleDecoder& dec = samples[size_t(s)];
      if (dec.finished()) continue;
      if (cb.on_logits) cb.on_logits(s, next[size_t(s)]);
      SampleDecoder::Step st = dec.next(next[size_t(s)].data(), V);
      Completion& out = result[size_t(s)];
      if (st.token) {
        if (cb.on_token) cb.on_token(s, *st.token);
        out.tokens.push_back(std::move(*st.token));
      }
      emit(cb, s, out, st.text);
      if (!dec.finished()) batch.push_back({s, {dec.last_token()}, {}});
    }
    if (batch.empty()) break;
    std::vector<float> out = model.forward(cache, batch, OptModel::Logits::Last);
    for (size_t i = 0; i < batch.size(); ++i)
      next[size_t(batch[i].seq)].assign(out.begin() + int64_t(i) * V, out.begin() + int64_t(i + 1) * V);
    if (stats) ++stats->decode_steps, stats->decode_tokens += int64_t(batch.size());
  }
  if (stats) stats->decode_seconds = seconds_since(t0);

  for (int64_t s = 0; s < opts.n; ++s) {
    emit(cb, s, result[size_t(s)], samples[size_t(s)].rest());  // whatever was held back is final now
    result[size_t(s)].finish_reason = samples[size_t(s)].finish_reason();
  }
  return result;
}

}  // namespace optforge
