#include "tokenizer/stream_decoder.h"

#include <algorithm>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace optforge {

TokenBytes text_bytes(const Tokenizer& tokenizer, bool skip_special) {
  return [tok = tokenizer, skip_special](int32_t id) {
    return skip_special && tok.is_special(id) ? std::string() : std::string(tok.token_bytes(id));
  };
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : StreamDecoder(text_bytes(tokenizer, skip_special)) {}

StreamDecoder::StreamDecoder(TokenBytes token_bytes, std::vector<std::string> stops)
    : token_bytes_(std::move(token_bytes)), stops_(std::move(stops)) {
  for (const std::string& s : stops_)
    if (s.empty()) throw Error("a stop sequence is empty");
}

std::string StreamDecoder::push(int32_t id) {
  if (stopped_) return {};
  bytes_ += token_bytes_(id);
  // Decode all but an unfinished character: what follows it cannot change how the rest decodes.
  const size_t whole = bytes_.size() - utf8_incomplete_tail(bytes_);
  text_ += utf8_replace_invalid(std::string_view(bytes_).substr(0, whole));
  bytes_.erase(0, whole);
  return take(false);
}

std::string StreamDecoder::finish() {
  if (stopped_) return {};
  text_ += utf8_replace_invalid(bytes_);
  bytes_.clear();
  return take(true);
}

std::string StreamDecoder::take(bool at_end) {
  // A stop sequence can only lie inside text_: whatever was handed out never ended with a
  // possible start of one (unstable_tail held such tails back).
  size_t cut = std::string::npos;
  for (const std::string& st : stops_) cut = std::min(cut, text_.find(st));
  // A longer stop sequence that starts before `cut` may still complete: then it is the first.
  const size_t hold = unstable_tail(text_, stops_);
  if (cut != std::string::npos && (at_end || text_.size() - hold >= cut)) {
    stopped_ = at_end = true;
    text_.resize(cut);
    bytes_.clear();
  }
  const size_t ready = at_end ? text_.size() : text_.size() - hold;
  std::string out = text_.substr(0, ready);
  text_.erase(0, ready);
  return out;
}

size_t unstable_tail(std::string_view s, const std::vector<std::string>& stops) {
  size_t hold = utf8_incomplete_tail(s);
  for (const std::string& st : stops)
    for (size_t k = std::min(st.size() - 1, s.size()); k > hold; --k)
      if (s.compare(s.size() - k, k, st, 0, k) == 0) {
        hold = k;
        break;
      }
  return hold;
}

}  // namespace optforge
