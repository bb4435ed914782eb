// The Hugging Face files around a BPE vocabulary: tokenizer_config.json and
// special_tokens_map.json (which tokens are added and which are BOS/EOS/UNK/PAD), and
// tokenizer.json (the `tokenizers` library's one-file form: vocabulary, merges, added tokens).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "tokenizer/bpe.h"

namespace optforge {

// Adds what dir/tokenizer_config.json and then dir/special_tokens_map.json say (either or both
// may be absent) to `config`: their added_tokens_decoder, bos/eos/unk/pad tokens (a string or an
// {"content": ...} object) and additional_special_tokens. Throws Error naming the file when it
// is not valid JSON or a field has the wrong type.
void read_special_token_files(const std::filesystem::path& dir, TokenizerConfig& config);

struct TokenizerJson {
  std::string vocab_json;  // model.vocab re-serialised: {token: id}
  std::string merges_txt;  // model.merges as merges.txt lines "a b"
};

// Reads a tokenizer.json holding a byte-level BPE (model.type "BPE", ByteLevel pre-tokenizer);
// its added_tokens and ByteLevel add_prefix_space go into `config`. Throws Error naming the file
// and the model type for any other model (WordPiece, Unigram, WordLevel), and naming the setting
// for BPE options optforge does not implement (dropout, byte_fallback, subword affixes).
TokenizerJson read_tokenizer_json(const std::filesystem::path& file, TokenizerConfig& config);
// The same from the file's contents; `file` names it in errors.
TokenizerJson parse_tokenizer_json(std::string_view text, const std::string& file, TokenizerConfig& config);

}  // namespace optforge
