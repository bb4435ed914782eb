#include "tokenizer/embedded_data.h"

extern "C" {
extern const char optforge_tok_vocab_json_begin[], optforge_tok_vocab_json_end[];
extern const char optforge_tok_merges_txt_begin[], optforge_tok_merges_txt_end[];
}

namespace optforge {

EmbeddedTokenizerFiles embedded_tokenizer_files() {
  return {{optforge_tok_vocab_json_begin, size_t(optforge_tok_vocab_json_end - optforge_tok_vocab_json_begin)},
          {optforge_tok_merges_txt_begin, size_t(optforge_tok_merges_txt_end - optforge_tok_merges_txt_begin)}};
}

}  // namespace optforge
