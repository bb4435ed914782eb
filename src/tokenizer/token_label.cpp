#include "tokenizer/token_label.h"

#include "tokenizer/utf8.h"

namespace optforge {
namespace {

// Python's repr() of bytes, between the quotes (quotes themselves left as they are).
std::string bytes_repr(std::string_view b) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : b) {
    const auto c = uint8_t(ch);
    if (c == '\\')
      out += "\\\\";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c >= 0x20 && c < 0x7f)
      out += char(c);
    else
      out += {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
  }
  return out;
}

}  // namespace

std::string token_label(const Tokenizer& tok, int32_t id) {
  if (tok.is_special(id)) return std::string(tok.id_to_token(id));
  const std::string_view bytes = tok.token_bytes(id);
  if (bytes.empty()) return "token_id:" + std::to_string(id);
  if (utf8_valid(bytes)) return std::string(bytes);
  return "bytes:" + bytes_repr(bytes);
}

}  // namespace optforge
