// The copy of data/opt-tokenizer/{vocab.json,merges.txt} built into the binary (embedded_data.S).
#pragma once

#include <string_view>

namespace optforge {

struct EmbeddedTokenizerFiles {
  std::string_view vocab_json;
  std::string_view merges_txt;
};

EmbeddedTokenizerFiles embedded_tokenizer_files();

}  // namespace optforge
