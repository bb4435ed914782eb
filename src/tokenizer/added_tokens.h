// Splitting text at the added tokens written in it ("</s>", "<pad>"), before BPE, the way
// transformers' tokenizers (slow and fast) and the `tokenizers` library do: the leftmost match
// first, the longest one where several start at the same byte; the text between is encoded on
// its own, so BPE never merges across a token. A token with lstrip (rstrip) also takes the
// Unicode whitespace on its left (right).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"

namespace optforge {

struct TextSpan {
  std::string_view text;  // a view into the input; empty for a token
  int32_t id = -1;        // the added token's id, or -1: text for BPE
};

// Appends the spans of `text` to `out`, in order. Empty text spans are left out.
void split_at_added_tokens(std::string_view text, const std::vector<AddedToken>& added, std::vector<TextSpan>& out);

}  // namespace optforge
