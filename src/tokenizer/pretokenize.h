// Pre-tokenization: GPT-2 splits text into pieces with one regex before BPE, and BPE never merges
// across pieces. Byte-for-byte this must agree with Python's `regex` module on
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
#pragma once

#include <string_view>
#include <vector>

namespace optforge {

// Appends the pieces of `text` to `pieces`; they are views into `text` and together cover all of
// it, in order. Bytes that are not well-formed UTF-8 match nothing in the regex: each run of
// them becomes a piece of its own, so any byte string still round-trips.
void pretokenize(std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace optforge
