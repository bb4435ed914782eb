#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace optforge {

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    Utf8Step step = utf8_step(pending_, pos);
    if (step.kind == Utf8Step::Truncated) break;  // wait for the next token's bytes
    if (step.kind == Utf8Step::Char) out.append(pending_, pos, step.len);
    else out += kReplacementChar;
    pos += step.len;
  }
  pending_.erase(0, pos);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = pending_.empty() ? std::string() : std::string(kReplacementChar);
  pending_.clear();
  return out;
}

}  // namespace optforge
