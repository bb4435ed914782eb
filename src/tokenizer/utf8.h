// The one UTF-8 module: every check, repair and count of UTF-8 in optforge goes through here.
// Well-formed means Unicode's table 3-7 (no overlong forms, surrogates or codepoints above
// U+10FFFF), which is Python's strict codec. Repair follows Python's bytes.decode("utf-8",
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
  size_t len;   // bytes consumed
  char32_t cp;  // the codepoint, for Char
};
// `allow_surrogates`: accept encoded surrogates (ED A0..BF xx), as Python's "surrogatepass"
// does (pickle strings are decoded that way).
Utf8Step utf8_step(std::string_view s, size_t pos, bool allow_surrogates = false);

// Whether s is well-formed UTF-8 throughout (a truncated tail is not).
bool utf8_valid(std::string_view s, bool allow_surrogates = false);

// Bytes at the end of s that begin a character more bytes could still complete (0..3): the
// part of a byte stream that decoding must hold back until the next bytes arrive.
size_t utf8_incomplete_tail(std::string_view s);

// Codepoints in well-formed UTF-8 (what Python's len() gives for the decoded str).
int64_t utf8_length(std::string_view valid);

// s with every ill-formed subpart (and a truncated tail) replaced by U+FFFD.
std::string utf8_replace_invalid(std::string_view s);

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

}  // namespace optforge
