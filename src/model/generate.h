// Text generation on top of the model: prefill the prompt once, share its KV cache blocks with n sample
// slots, then decode the samples together (one batched step per token; each sample's choice and
// text through a SampleDecoder, model/sample_decoder.h) until each hits max_tokens,
// end-of-sequence or a stop sequence. Reports per-token logprobs of the model's own
// distribution (before penalty/temperature/top-k/top-p), as OpenAI-style APIs do.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/opt.h"
#include "model/sampling.h"
#include "tokenizer/stream_decoder.h"

namespace optforge {

struct GenerateOptions {
  SamplingParams sampling;
  int64_t max_tokens = 16;
  int64_t n = 1;                  // samples of the same prompt
  std::vector<std::string> stop;  // matched on the generated text; the match is cut off
  bool stop_at_eos = true;        // at the model config's eos_token_id (</s> = 2 in OPT)
  bool echo = false;              // also return the prompt's tokens with their logprobs
  int64_t top_logprobs = 0;       // alternatives per token
};

struct GeneratedToken {
  int32_t id = 0;
  std::optional<float> logprob;  // none for the first prompt token (nothing predicts it)
  std::vector<TokenLogprob> top;
};

struct Completion {
  std::vector<GeneratedToken> prompt;  // with echo
  std::vector<GeneratedToken> tokens;  // generated (a stop sequence's tokens included, eos not)
  std::string text;                    // generated text, valid UTF-8 (HF's decode), cut before a stop sequence
  std::string finish_reason;           // "stop" or "length"
};

struct GenerateStats {
  int64_t prompt_tokens = 0, decode_steps = 0, decode_tokens = 0;
  double prompt_seconds = 0, decode_seconds = 0;
};

struct GenerateCallbacks {
  std::function<void(int64_t sample, const GeneratedToken&)> on_token;
  // Text of a sample that became final (held back while it could still be the start of a stop
  // sequence or an unfinished UTF-8 character); the pieces concatenate to Completion::text.
  std::function<void(int64_t sample, std::string_view text)> on_text;
  // The raw logits a sample's token was chosen from.
  std::function<void(int64_t sample, const std::vector<float>& logits)> on_logits;
};

// `token_bytes`: each id's bytes (text_bytes(tokenizer), tokenizer/stream_decoder.h), needed for
// `text` and stop sequences; may be empty (then opts.stop must be empty). Samples stop at the
// model config's eos_token_id. Throws Error for an empty prompt, n < 1, a prompt longer than the
// context, or stop sequences without token_bytes (all before any model work).
std::vector<Completion> generate(OptModel& model, const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                 const TokenBytes& token_bytes = {}, const GenerateCallbacks& callbacks = {},
                                 GenerateStats* stats = nullptr);

}  // namespace optforge
