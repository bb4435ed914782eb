// A compiled PCRE2 pattern for names read from untrusted files (checkpoint file names): linear
// backtracking limits instead of std::regex's recursion, which a long crafted name can overflow.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace optforge {

class Pattern {
 public:
  // Throws optforge::Error if `pattern` does not compile (a programming error).
  explicit Pattern(const char* pattern);
  ~Pattern();
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;

  // The capture groups (1..n) if the pattern matches the WHOLE of `s`; a group that did not take
  // part in the match is nullopt. nullopt if it does not match (or hits PCRE2's match limit).
  std::optional<std::vector<std::optional<std::string>>> full_match(const std::string& s) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace optforge
