// The tokenizer options every command that reads text shares (tokenize, generate, score, serve):
// which tokenizer folder, and whether "</s>" / "<pad>" written in the text are read as special
// tokens (transformers' behaviour, the default) or as plain text (--no-parse-special).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tokenizer/bpe.h"

namespace optforge::cli {

struct TokenizerOptions {
  std::string dir;
  bool no_parse_special = false;
};

inline void add_tokenizer_options(CLI::App* cmd, TokenizerOptions& o) {
  cmd->add_option("--tokenizer", o.dir,
                  "Directory with vocab.json and merges.txt, or tokenizer.json, plus any tokenizer_config.json "
                  "(default: the built-in OPT files)")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--no-parse-special", o.no_parse_special,
                "Encode \"</s>\" and \"<pad>\" written in text as plain text, not as the special ids 2 and 1 "
                "(for untrusted text; transformers' split_special_tokens=True)");
}

inline Tokenizer load_tokenizer(const TokenizerOptions& o) {
  Tokenizer tok = o.dir.empty() ? Tokenizer::builtin() : Tokenizer::load(o.dir);
  tok.set_parse_special(!o.no_parse_special);
  return tok;
}

}  // namespace optforge::cli
