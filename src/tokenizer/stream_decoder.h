// Incremental detokenization: token ids in, text out as soon as it is final. One character can
// span several tokens (CJK, emoji) and a stop sequence several tokens, so what could still change
// is held back: the bytes of an unfinished UTF-8 character, and decoded text that is a prefix of
// a stop sequence. Each token costs work in proportion to its bytes and the stops', never to the
// text so far. Everything handed out is valid UTF-8, and all of it together equals Python's
// bytes.decode("utf-8", errors="replace") of all the tokens' bytes (HF's decode), cut before the
// first occurrence of a stop sequence in that text. `generate` and the server both decode
// through this class (model/sample_decoder.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"

namespace optforge {

// The raw bytes a token id adds to the text (empty for ids without text).
using TokenBytes = std::function<std::string(int32_t id)>;

// The tokenizer's bytes of each id, as Tokenizer::decode() joins them: special ids (<s> <pad> </s>
// <unk>) add nothing when `skip_special`. The one id -> bytes map of `generate`, the server and
// their token offsets. Holds a copy of the tokenizer (cheap: copies share the tables).
TokenBytes text_bytes(const Tokenizer& tokenizer, bool skip_special = true);

class StreamDecoder {
 public:
  // The tokenizer's text: StreamDecoder(text_bytes(tokenizer, skip_special)).
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  // `stops`: the text is cut before the first occurrence of any of them (empty ones are not allowed).
  explicit StreamDecoder(TokenBytes token_bytes, std::vector<std::string> stops = {});

  // The text that `id` made final; empty while it is held back. Nothing once stopped().
  std::string push(int32_t id);
  // At the end of the stream: the held-back text, a partial character at the end becoming U+FFFD.
  std::string finish();
  // Bytes held back.
  size_t pending() const { return bytes_.size() + text_.size(); }
  // A stop sequence was found: the text ended just before it.
  bool stopped() const { return stopped_; }

 private:
  TokenBytes token_bytes_;
  std::vector<std::string> stops_;
  // Held back: decoded text that may be the start of a stop sequence, then the raw bytes of an
  // unfinished character.
  std::string text_, bytes_;
  bool stopped_ = false;

  // Hands out what is final (everything `at_end`), cut before the first stop sequence.
  std::string take(bool at_end);
};

// How many bytes at the end of `s` (text, or raw bytes) may still change or grow into something:
// an unfinished UTF-8 character, or a prefix of one of `stops` (each non-empty).
size_t unstable_tail(std::string_view s, const std::vector<std::string>& stops);

}  // namespace optforge
