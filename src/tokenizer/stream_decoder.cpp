#include "tokenizer/stream_decoder.h"

#include <algorithm>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace optforge {

StreamDecoder::StreamDecoder(Tokenizer tokenizer, bool skip_special)
    : token_bytes_([tok = std::move(tokenizer), skip_special](int32_t id) {
        return skip_special && tok.is_special(id) ? std::string() : std::string(tok.token_bytes(id));
      }) {}

StreamDecoder::StreamDecoder(TokenBytes token_bytes, std::vector<std::string> stops)
    : token_bytes_(std::move(token_bytes)), stops_(std::move(stops)) {
  for (const std::string& s : stops_)
    if (s.empty()) throw Error("a stop sequence is empty");
}

std::string StreamDecoder::push(int32_t id) {
  if (stopped_) return {};
  pending_ += token_bytes_(id);
  // A stop sequence can only lie inside the pending bytes: whatever was handed out was never a
  // possible start of one (unstable_tail held such tails back).
  size_t cut = std::string::npos;
  for (const std::string& st : stops_) cut = std::min(cut, pending_.find(st));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = utf8_replace_invalid(std::string_view(pending_).substr(0, cut));
    pending_.clear();
    return out;
  }
  const size_t ready = pending_.size() - unstable_tail(pending_, stops_);
  std::string out = utf8_replace_invalid(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8_replace_invalid(pending_);
  pending_.clear();
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
