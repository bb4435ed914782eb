#include "tokenizer/utf8.h"

#include <algorithm>

namespace optforge {

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

Utf8Step utf8_step(std::string_view s, size_t pos, bool allow_surrogates) {
  auto byte = [&](size_t i) { return uint8_t(s[i]); };
  uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {Utf8Step::Char, 1, b0};
  // The lead byte fixes the length and the allowed range of the second byte; the narrower
  // ranges exclude overlong forms, surrogates and codepoints above U+10FFFF (Unicode table 3-7).
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED && !allow_surrogates) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {Utf8Step::Invalid, 1, 0};
  }
  for (size_t k = 1; k <= need; ++k) {
    if (pos + k >= s.size()) return {Utf8Step::Truncated, k, 0};
    uint8_t b = byte(pos + k);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return {Utf8Step::Invalid, k, 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {Utf8Step::Char, need + 1, cp};
}

bool utf8_valid(std::string_view s, bool allow_surrogates) {
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Step step = utf8_step(s, pos, allow_surrogates);
    if (step.kind != Utf8Step::Char) return false;
    pos += step.len;
  }
  return true;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // A character is at most 4 bytes, so only a start among the last 3 can still be incomplete;
  // the nearest non-continuation byte from the end is the only candidate.
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const size_t pos = s.size() - back;
    if ((uint8_t(s[pos]) & 0xC0) == 0x80) continue;  // a continuation byte starts nothing
    const Utf8Step step = utf8_step(s, pos);
    return step.kind == Utf8Step::Truncated && step.len == back ? back : 0;
  }
  return 0;
}

int64_t utf8_length(std::string_view valid) {
  int64_t n = 0;
  for (char c : valid) n += (uint8_t(c) & 0xC0) != 0x80;  // every character has one non-continuation byte
  return n;
}

std::string utf8_replace_invalid(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    // Copy the longest run of ASCII and well-formed characters in one go.
    size_t start = pos;
    Utf8Step step{};
    while (pos < s.size() && (step = utf8_step(s, pos)).kind == Utf8Step::Char) pos += step.len;
    out.append(s.substr(start, pos - start));
    if (pos < s.size()) {
      out += kReplacementChar;
      pos += step.len;
    }
  }
  return out;
}

}  // namespace optforge
