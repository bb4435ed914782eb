// Incremental detokenization for streaming output: one character can span several tokens (CJK,
// emoji), so bytes are held back until they form complete UTF-8. Everything emitted is valid
// UTF-8, and the concatenation of all output equals Tokenizer::decode_text() of all the ids.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/bpe.h"

namespace optforge {

class StreamDecoder {
 public:
  explicit StreamDecoder(Tokenizer tokenizer, bool skip_special = true)
      : tok_(std::move(tokenizer)), skip_special_(skip_special) {}

  // The text that `id` completes; empty while a character is still partial.
  std::string push(int32_t id);
  // At end of stream: a held-back partial character becomes U+FFFD.
  std::string finish();
  // Bytes held back, waiting for the rest of a character.
  size_t pending() const { return pending_.size(); }

 private:
  Tokenizer tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace optforge
