// One sample of a job, decoded token by token under the scheduler's control: the same choice
// and text rules as generate() (so a greedy request over HTTP gives `optforge generate`'s
// output), but one step at a time, so the sample can share a batch with any other request's.
//
// Per step: raw logits -> logit_bias, presence/frequency penalties, min_tokens -> generate()'s
// processors (repetition penalty, temperature, top-k, top-p) -> argmax or a seeded draw. Text is
// the decoded ids, handed out only once final: held back while it may be the start of a stop
// sequence or of an unfinished UTF-8 character, and cut before a stop sequence.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/generate.h"
#include "serve/job.h"
#include "tokenizer/bpe.h"

namespace optforge::serve {

class SampleDecoder {
 public:
  // `budget`: tokens this sample may generate (max_tokens, clamped to the context).
  SampleDecoder(const JobSpec& spec, int64_t sample, int64_t budget, const Tokenizer& tok);

  struct Step {
    std::optional<GeneratedToken> token;  // none when the model chose </s>
    std::string text;                     // text that became final
  };
  // Chooses the next token from the model's raw logits for this sample.
  Step next(const std::vector<float>& raw_logits);
  // Once finished: the text still held back (it is final now).
  std::string rest();

  bool finished() const { return finished_; }
  const std::string& finish_reason() const { return finish_reason_; }
  int64_t generated() const { return int64_t(ids_.size()); }
  int32_t last_token() const { return ids_.back(); }

 private:
  const JobSpec& spec_;
  const Tokenizer& tok_;
  int64_t budget_;
  Rng rng_;
  std::vector<int32_t> history_, ids_;
  std::map<int32_t, int64_t> counts_;  // generated ids, for the OpenAI penalties
  std::string text_;
  size_t emitted_ = 0;
  bool finished_ = false;
  std::string finish_reason_ = "length";
};

// Text held back while streaming: the one rule generate() uses (model/generate.h).
using optforge::unstable_tail;

}  // namespace optforge::serve
