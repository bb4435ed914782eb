#include "tokenizer/byte_unicode.h"

#include "tokenizer/utf8.h"

namespace optforge {
namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;
  std::array<int16_t, 512> from_cp{};  // every mapped codepoint is below 256 + 68

  Tables() {
    from_cp.fill(-1);
    char32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      // Printable Latin-1 keeps its own codepoint; control, space, DEL, NBSP and soft hyphen do not.
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      char32_t cp = printable ? char32_t(b) : next_extra++;
      to_cp[b] = cp;
      from_cp[cp] = int16_t(b);
      append_utf8(to_utf8[b], cp);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_codepoint(uint8_t byte) { return tables().to_cp[byte]; }

int codepoint_to_byte(char32_t cp) { return cp < tables().from_cp.size() ? tables().from_cp[cp] : -1; }

const std::array<std::string, 256>& byte_symbols_utf8() { return tables().to_utf8; }

}  // namespace optforge
