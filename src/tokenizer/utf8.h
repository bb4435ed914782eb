// Small UTF-8 helpers for the tokenizer. Decoding follows Python's bytes.decode("utf-8",
// errors="replace") exactly: each maximal ill-formed subpart becomes one U+FFFD, the rule HF's
// decode uses, so our text output matches the reference even for token runs that split characters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace optforge {

void append_utf8(std::string& out, char32_t cp);

// What starts at s[pos]: a well-formed character, an ill-formed subpart to replace, or the
// beginning of a character cut off by the end of s (more bytes may complete it).
struct Utf8Step {
  enum Kind { Char, Invalid, Truncated } kind;
  size_t len;    // bytes consumed
  char32_t cp;   // the codepoint, for Char
};
Utf8Step utf8_step(std::string_view s, size_t pos);

// s with every ill-formed subpart (and a truncated tail) replaced by U+FFFD.
std::string utf8_replace_invalid(std::string_view s);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

}  // namespace optforge
