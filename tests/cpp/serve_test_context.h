// The request context the serve tests parse against, without a model: the built-in OPT
// tokenizer, a 64-token context, --max-tokens-limit 40, n at most 4.
#pragma once

#include "serve/openai_api.h"

namespace optforge::serve::testing {

inline const Tokenizer& test_tokenizer() {
  static const Tokenizer t = Tokenizer::builtin();
  return t;
}

inline ApiContext test_context() {
  ApiContext c;
  c.tok = &test_tokenizer();
  c.model_id = "opt-test";
  c.context = 64;
  c.max_tokens_limit = 40;
  c.max_n = 4;
  return c;
}

}  // namespace optforge::serve::testing
