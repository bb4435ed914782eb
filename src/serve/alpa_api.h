// alpa's OPT serving API (alpa/examples/llm_serving), for clients written against it:
//  POST /completions  {prompt, min_tokens, max_tokens, temperature, top_p, n, echo, best_of, ...}
//                     -> {"id", "object": "text_completion", "created", "choices": [{"text"}]}
//  POST /logprobs     {prompt, top_k, cache_id} -> {"cache_id", "logprobs": [[..]], "indices": [[..]]}
// with alpa's semantics where they differ from OpenAI's: newlines normalised, temperature and
// top_p rounded to one decimal, temperature <= 1e-3 means greedy, top_k 50 while sampling,
// max_tokens clamped to the context instead of refused. Errors are alpa's
// {"type": "error", "message", "stacktrace"} (plus OpenAI's "error" object). Responses carry
// OpenAI's fields too (index, finish_reason, usage): alpa's clients read only choices[i].text.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/api_error.h"
#include "serve/openai_api.h"

namespace optforge::serve {

CompletionRequest parse_alpa_completion(const nlohmann::json& body, const ApiContext& ctx);

struct AlpaLogprobsRequest {
  std::vector<std::vector<int32_t>> prompts;
  int64_t top_k = 100000;
  std::string cache_id;  // given by the client, or empty
};
// Limits: at most `max_prompts` prompts, all of one length.
AlpaLogprobsRequest parse_alpa_logprobs(const nlohmann::json& body, const ApiContext& ctx, int64_t max_prompts);

// The prompts behind each cache_id (the 4 most recently used, as alpa keeps). A request with a
// cache_id must extend every cached prompt by exactly one token. The server recomputes the
// prompt rather than pinning KV cache slots between requests (see docs/serving.md).
class AlpaLogprobsCache {
 public:
  // Checks the request against its cache_id (ApiError 400) and returns the id to answer with.
  std::string check_and_store(const AlpaLogprobsRequest& req);

 private:
  std::mutex mu_;
  std::list<std::pair<std::string, std::vector<std::vector<int32_t>>>> lru_;  // most recent first
};

// alpa's error body for an ApiError.
nlohmann::json alpa_error_json(const ApiError& e);

// A random UUID (version 4) string, as alpa's ids are.
std::string uuid4();

}  // namespace optforge::serve
