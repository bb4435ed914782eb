// One sample, decoded token by token: the one per-token loop behind both `optforge generate`
// (model/generate.cpp) and the server's scheduler, so a greedy or seeded request over HTTP gives
// `generate`'s tokens and text.
//
// Per step: raw logits -> logit_bias, presence/frequency penalties, min_tokens -> HF's processors
// (repetition penalty, temperature, top-k, top-p) -> argmax or a seeded draw. Logprobs are those
// of the model's own distribution (log-softmax of the raw logits), as OpenAI's APIs report them.
// Text goes through a StreamDecoder: handed out once final, as valid UTF-8 (a character cut off
// at the end becomes U+FFFD, as HF's decode makes it), cut before the first stop sequence.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/generate.h"
#include "tokenizer/stream_decoder.h"

namespace optforge {

// What the server's APIs add to GenerateOptions; the defaults change nothing.
struct SampleControls {
  int64_t min_tokens = 0;  // </s> is suppressed before this many new tokens (alpa's min_tokens)
  float presence_penalty = 0, frequency_penalty = 0;  // OpenAI's, over the generated tokens
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the raw logits before sampling
  bool logprobs = true;  // compute each token's logprob (a log-softmax over the vocab per token)
};

class SampleDecoder {
 public:
  // Sample `sample` of a prompt: its generator is seeded from opts.sampling.seed and `sample`,
  // so sample i draws the same tokens wherever it runs. `eos`: the model config's eos_token_id
  // (where opts.stop_at_eos ends the sample; what min_tokens suppresses). `budget`: tokens it
  // may generate. `token_bytes`: empty when no text is wanted (then opts.stop must be empty).
  // `opts` must outlive the decoder. Throws Error for an empty stop sequence or stops without
  // token_bytes.
  SampleDecoder(const GenerateOptions& opts, SampleControls controls, int32_t eos, const std::vector<int32_t>& prompt,
                int64_t sample, int64_t budget, TokenBytes token_bytes);

  struct Step {
    std::optional<GeneratedToken> token;  // none when the model chose </s>
    std::string text;                     // text that became final
  };
  // Chooses the next token from the model's raw logits for this sample ([vocab] f32).
  Step next(const float* raw_logits, int64_t vocab);
  // Once finished (call once): the text still held back, final now.
  std::string rest();

  bool finished() const { return finished_; }
  const std::string& finish_reason() const { return finish_reason_; }  // "stop" or "length"
  int64_t generated() const { return generated_; }
  int32_t last_token() const { return history_.back(); }  // the prompt's last before any is generated
  // The prompt and the tokens generated so far: what a preempted sample's cache is recomputed from.
  const std::vector<int32_t>& history() const { return history_; }

 private:
  int32_t choose(const float* raw, int64_t vocab);

  const GenerateOptions& opts_;
  SampleControls controls_;
  int32_t eos_;
  int64_t budget_;
  Rng rng_;
  std::vector<int32_t> history_;       // prompt + generated, for the repetition penalty
  std::map<int32_t, int64_t> counts_;  // generated ids, for the OpenAI penalties
  int64_t generated_ = 0;
  std::optional<StreamDecoder> text_;
  bool finished_ = false;
  std::string finish_reason_ = "length";
};

// The prompt's tokens with their logprobs under the model (what echo reports): `logits` holds
// every prompt position's raw logits, [prompt.size(), vocab] f32; token i's logprob comes from
// row i - 1, with the `top` likeliest alternatives. The first token has none (nothing predicts it).
std::vector<GeneratedToken> prompt_logprobs(const std::vector<int32_t>& prompt, const float* logits, int64_t vocab,
                                            int64_t top);

}  // namespace optforge
