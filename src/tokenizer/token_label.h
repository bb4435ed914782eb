// The string that names one token id in API responses (OpenAI's `tokens` and `top_logprobs`
// keys, the CLI's `text`), chosen so that distinct ids never print alike:
//   - a special id (<s> <pad> </s> <unk>): its vocab string, "</s>";
//   - bytes that are well-formed UTF-8: that text, " the";
//   - bytes that are not (a piece of a character, e.g. b"\xf0\x9f"): "bytes:" and the bytes as
//     Python's repr writes them, without the b'' around them and without escaping quotes:
//     printable ASCII as itself, \ as \\, tab/newline/return as \t \n \r, anything else as
//     \xNN in lower-case hex: "bytes:\xf0\x9f", "bytes: \xe2\x80". This is OpenAI's form.
//   - an id with no bytes at all (OPT's embedding rows 50265..50271 beyond the vocab):
//     "token_id:" and the id, "token_id:50265".
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/bpe.h"

namespace optforge {

std::string token_label(const Tokenizer& tok, int32_t id);

}  // namespace optforge
