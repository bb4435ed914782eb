#include "serve/prompt_input.h"

#include <algorithm>
#include <cstdint>

#include "serve/api_error.h"
#include "serve/json_fields.h"

namespace optforge::serve {
namespace {

std::string normalized(std::string s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += '\n';
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<int32_t> ids_of(const nlohmann::json& list, const PromptLimits& lim) {
  std::vector<int32_t> ids;
  for (const auto& v : list) {
    if (!v.is_number_integer()) throw bad_request(type_message(v, "integer", "prompt"), "prompt");
    const int64_t id =
        v.is_number_unsigned() ? int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(INT64_MAX))) : v.get<int64_t>();
    if (id < 0 || id >= lim.vocab)
      throw bad_request("token id " + std::to_string(id) + " in the prompt is outside the vocabulary (0.." +
                            std::to_string(lim.vocab - 1) + ")",
                        "prompt");
    ids.push_back(int32_t(id));
  }
  if (ids.empty()) throw bad_request("a prompt is an empty list of tokens", "prompt");
  return ids;
}

}  // namespace

std::vector<std::vector<int32_t>> parse_prompts(const nlohmann::json& v, const Tokenizer& tok,
                                                const PromptLimits& lim) {
  auto encode = [&](const nlohmann::json& s) {
    return tok.encode(lim.normalize_newlines ? normalized(s.get<std::string>()) : s.get<std::string>());
  };
  if (v.is_string()) return {encode(v)};
  if (!v.is_array()) throw bad_request(type_message(v, "string or array", "prompt"), "prompt");
  if (v.empty()) throw bad_request("The prompt must be nonempty.", "prompt");
  if (v.size() > lim.max_prompts && !v[0].is_number())
    throw bad_request(
        "at most " + std::to_string(lim.max_prompts) + " prompts per request; got " + std::to_string(v.size()),
        "prompt");
  std::vector<std::vector<int32_t>> out;
  if (v[0].is_string()) {
    for (const auto& s : v) {
      if (!s.is_string()) throw bad_request("a list of prompts must hold only strings or only token lists", "prompt");
      out.push_back(encode(s));
    }
  } else if (v[0].is_number()) {
    out.push_back(ids_of(v, lim));
  } else if (v[0].is_array()) {
    for (const auto& l : v) {
      if (!l.is_array()) throw bad_request("a list of prompts must hold only strings or only token lists", "prompt");
      out.push_back(ids_of(l, lim));
    }
  } else {
    throw bad_request(type_message(v[0], "string, integer or array", "prompt"), "prompt");
  }
  return out;
}

}  // namespace optforge::serve
