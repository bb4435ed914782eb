#include "model/generate.h"

#include <algorithm>
#include <chrono>

#include "util/error.h"

namespace optforge {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

GeneratedToken make_token(int32_t id, const std::vector<float>& logprobs, int64_t top) {
  return {id, logprobs[size_t(id)], top_logprobs(logprobs, top)};
}


struct Sample {
  std::vector<int32_t> history;  // prompt + generated, for the repetition penalty
  std::vector<int32_t> ids;      // generated
  Rng rng;
  Completion out;
  size_t emitted = 0;  // bytes of text already handed to on_text
  bool done = false;
};

}  // namespace

size_t unstable_tail(const std::string& s, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& st : stops)
    for (size_t k = std::min(st.size() - 1, s.size()); k > hold; --k)
      if (s.compare(s.size() - k, k, st, 0, k) == 0) {
        hold = k;
        break;
      }
  // A trailing partial UTF-8 sequence.
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (uint8_t(s[i - 1]) & 0xC0) == 0x80) --i, ++back;
  if (i > 0) {
    const uint8_t lead = uint8_t(s[i - 1]);
    const size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > back + 1) hold = std::max(hold, back + 1);
  }
  static const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD: a decoder's stand-in
  if (s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0) hold = std::max<size_t>(hold, 3);
  return hold;
}

std::vector<Completion> generate(OptModel& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                 const Detokenize& detokenize, const GenerateCallbacks& cb, GenerateStats* stats) {
  if (prompt.empty()) throw Error("the prompt is empty");
  if (opts.n < 1) throw Error("n must be at least 1");
  if (!opts.stop.empty() && !detokenize) throw Error("stop sequences need a tokenizer");
  for (const auto& s : opts.stop)
    if (s.empty()) throw Error("a stop sequence is empty");
  const int64_t V = model.config().vocab;
  const int64_t max_len = model.config().max_positions;
  const int64_t budget = std::max<int64_t>(0, std::min(opts.max_tokens, max_len - int64_t(prompt.size())));
  if (int64_t(prompt.size()) > max_len)
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " + std::to_string(max_len));
  KvCache cache = model.make_cache(opts.n, int64_t(prompt.size()) + budget);

  // Prefill once; every position's logits only when the prompt's logprobs are wanted.
  auto t0 = std::chrono::steady_clock::now();
  const auto which = opts.echo ? OptModel::Logits::All : OptModel::Logits::Last;
  std::vector<float> logits = model.forward(cache, {{0, prompt, {}}}, which);
  if (stats) stats->prompt_tokens = int64_t(prompt.size()), stats->prompt_seconds = seconds_since(t0);
  std::vector<GeneratedToken> echoed;
  if (opts.echo) {
    echoed.push_back({prompt[0], std::nullopt, {}});
    for (size_t i = 1; i < prompt.size(); ++i)
      echoed.push_back(make_token(prompt[i], log_softmax(&logits[(i - 1) * size_t(V)], V), opts.top_logprobs));
    logits.erase(logits.begin(), logits.end() - V);
  }
  for (int64_t s = 1; s < opts.n; ++s) cache.copy_sequence(0, s);

  std::vector<Sample> samples;
  for (int64_t s = 0; s < opts.n; ++s) {
    samples.push_back({prompt, {}, Rng(opts.sampling.seed + uint64_t(s) * 0x9E3779B97F4A7C15ull), {}, 0, false});
    samples.back().out.prompt = echoed;
    samples.back().out.finish_reason = "length";
  }
  std::vector<std::vector<float>> next(size_t(opts.n), logits);  // every sample starts from the prompt

  t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < budget; ++step) {
    std::vector<SeqTokens> batch;
    for (int64_t s = 0; s < opts.n; ++s) {
      Sample& sm = samples[size_t(s)];
      if (sm.done) continue;
      const std::vector<float>& raw = next[size_t(s)];
      if (cb.on_logits) cb.on_logits(s, raw);
      std::vector<float> scores = raw;
      process_logits(scores, sm.history, opts.sampling);
      const int32_t id = choose_token(scores, opts.sampling.greedy(), sm.rng);
      if (opts.stop_at_eos && id == opts.eos) {
        sm.done = true;
        sm.out.finish_reason = "stop";
        continue;
      }
      GeneratedToken tok = make_token(id, log_softmax(raw.data(), V), opts.top_logprobs);
      sm.history.push_back(id);
      sm.ids.push_back(id);
      sm.out.tokens.push_back(tok);
      if (cb.on_token) cb.on_token(s, tok);
      if (detokenize) {
        sm.out.text = detokenize(sm.ids);
        size_t final_len = sm.out.text.size() - unstable_tail(sm.out.text, opts.stop);
        size_t cut = std::string::npos;  // the earliest stop sequence, if any
        for (const std::string& st : opts.stop)
          cut = std::min(cut, sm.out.text.find(st, sm.emitted > st.size() ? sm.emitted - st.size() : 0));
        if (cut != std::string::npos) {
          sm.out.text.resize(cut);
          final_len = cut;
          sm.done = true;
          sm.out.finish_reason = "stop";
        }
        final_len = std::max(final_len, sm.emitted);
        if (cb.on_text && final_len > sm.emitted)
          cb.on_text(s, std::string_view(sm.out.text).substr(sm.emitted, final_len - sm.emitted));
        sm.emitted = final_len;
      }
      if (!sm.done && step + 1 < budget) batch.push_back({s, {id}, {}});
    }
    if (batch.empty()) break;
    std::vector<float> out = model.forward(cache, batch, OptModel::Logits::Last);
    for (size_t i = 0; i < batch.size(); ++i)
      next[size_t(batch[i].seq)].assign(out.begin() + int64_t(i) * V, out.begin() + int64_t(i + 1) * V);
    if (stats) ++stats->decode_steps, stats->decode_tokens += int64_t(batch.size());
  }
  if (stats) stats->decode_seconds = seconds_since(t0);

  std::vector<Completion> result;
  for (Sample& sm : samples) {
    // Whatever was held back is final now.
    if (cb.on_text && sm.emitted < sm.out.text.size())
      cb.on_text(int64_t(&sm - samples.data()), std::string_view(sm.out.text).substr(sm.emitted));
    result.push_back(std::move(sm.out));
  }
  return result;
}

}  // namespace optforge
