// The four prompt forms OpenAI, alpa and metaseq all accept: "text", ["text", ...], [ids] and
// [[ids], ...]. Text is encoded with </s> first (as OPT was trained and `optforge generate`
// does); token ids are taken as given, but must lie inside the model's embedding table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe.h"

namespace optforge::serve {

struct PromptLimits {
  int64_t vocab = 50272;            // token ids must be below this
  size_t max_prompts = 256;         // prompts per request
  bool normalize_newlines = false;  // "\r\n" and "\r" -> "\n" first (alpa and metaseq do this)
};

// ApiError 400 (param "prompt") for anything else, an empty list or an empty prompt.
std::vector<std::vector<int32_t>> parse_prompts(const nlohmann::json& value, const Tokenizer& tok,
                                                const PromptLimits& limits);

}  // namespace optforge::serve
