#include "serve/alpa_api.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "serve/json_fields.h"
#include "serve/prompt_input.h"

namespace optforge::serve {
namespace {

using nlohmann::json;

double round1(double x) { return std::round(x * 10.0) / 10.0; }

}  // namespace

std::string uuid4() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  const uint64_t a = rng(), b = rng();
  char s[40];
  std::snprintf(s, sizeof s, "%08x-%04x-4%03x-%04x-%012llx", unsigned(a >> 32), unsigned(a >> 16) & 0xFFFF,
                unsigned(a) & 0xFFF, unsigned((b >> 48) & 0x3FFF) | 0x8000,
                static_cast<unsigned long long>(b & 0xFFFFFFFFFFFFull));
  return s;
}

// alpa's prompt field: a string, a list of strings or token ids; newlines normalised as alpa does.
static std::vector<std::vector<int32_t>> alpa_prompts(Fields& f, const ApiContext& ctx) {
  const json* p = f.raw("prompt");
  if (!p) throw bad_request("The prompt must be nonempty.", "prompt");
  PromptLimits lim;
  lim.vocab = ctx.vocab;
  lim.normalize_newlines = true;
  return parse_prompts(*p, *ctx.tok, lim);
}

CompletionRequest parse_alpa_completion(const json& body, const ApiContext& ctx) {
  Fields f(body);
  CompletionRequest r;
  r.prompts = alpa_prompts(f, ctx);
  size_t longest = 0;
  for (const auto& q : r.prompts) longest = std::max(longest, q.size());
  if (int64_t(longest) > ctx.context)
    throw bad_request("the prompt has " + std::to_string(longest) +
                          " tokens, more than the model's maximum sequence length " + std::to_string(ctx.context),
                      "prompt");

  GenerateOptions& o = r.spec.opts;
  // alpa's worker defaults max_tokens to its max_seq_len and clamps prompt + max_tokens to it;
  // here the clamp is the same and the default is alpa's client's, 32.
  o.max_tokens = std::min(f.integer("max_tokens", 32, 0, INT64_MAX), ctx.max_tokens_limit);
  r.spec.controls.min_tokens = f.integer("min_tokens", 0, 0, INT64_MAX);
  const double t = round1(f.number("temperature", 1.0, 0.0, 1e6));
  o.sampling.temperature = t <= 1e-3 ? 0.0f : float(t);
  o.sampling.top_p = float(round1(f.number("top_p", 1.0, 0.0, 1.0)));
  o.sampling.top_k = f.integer("top_k", 50, 0, ctx.vocab);  // HF's generation default, which alpa inherits
  o.sampling.seed = uint64_t(f.integer("seed", int64_t(std::random_device{}()), INT64_MIN, INT64_MAX));
  o.n = f.integer("n", 1, 1, ctx.max_n);
  r.echo = f.boolean("echo", false);
  if (const json* s = f.raw("stop")) {  // alpa raises NotImplementedError; we honour it as OpenAI does
    if (s->is_string())
      o.stop.push_back(s->get<std::string>());
    else if (s->is_array())
      for (const auto& x : *s) {
        if (!x.is_string()) throw bad_request(type_message(x, "string", "stop"), "stop");
        o.stop.push_back(x.get<std::string>());
      }
    else
      throw bad_request(type_message(*s, "string or array", "stop"), "stop");
    std::erase_if(o.stop, [](const std::string& x) { return x.empty(); });
  }
  r.spec.controls.logprobs = false;  // alpa's completions never return them
  for (const char* ignored : {"best_of", "model", "api_key", "g-recaptcha-response"}) f.ignore(ignored);
  return r;
}

AlpaLogprobsRequest parse_alpa_logprobs(const json& body, const ApiContext& ctx, int64_t max_prompts) {
  Fields f(body);
  AlpaLogprobsRequest r;
  r.prompts = alpa_prompts(f, ctx);
  if (int64_t(r.prompts.size()) > max_prompts)
    throw bad_request("at most " + std::to_string(max_prompts) + " prompts per logprobs request (the batch size)",
                      "prompt");
  for (const auto& q : r.prompts) {
    if (q.size() != r.prompts[0].size())
      throw bad_request("all prompts of a logprobs request must have the same length", "prompt");
    if (int64_t(q.size()) > ctx.context)
      throw bad_request("the prompt has " + std::to_string(q.size()) +
                            " tokens, more than the model's maximum sequence length " + std::to_string(ctx.context),
                        "prompt");
  }
  r.top_k = std::min<int64_t>(f.integer("top_k", 100000, 1, INT64_MAX), ctx.vocab);
  r.cache_id = f.string("cache_id", "");
  return r;
}

std::string AlpaLogprobsCache::check_and_store(const AlpaLogprobsRequest& req) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string id = req.cache_id;
  if (!id.empty()) {
    auto it = std::find_if(lru_.begin(), lru_.end(), [&](const auto& e) { return e.first == id; });
    if (it == lru_.end()) throw bad_request("unknown or expired cache_id '" + id + "'", "cache_id");
    const auto& cached = it->second;
    bool extends = cached.size() == req.prompts.size();
    for (size_t i = 0; extends && i < cached.size(); ++i)
      extends = req.prompts[i].size() == cached[i].size() + 1 &&
                std::equal(cached[i].begin(), cached[i].end(), req.prompts[i].begin());
    if (!extends)
      throw bad_request(
          "Request does not extend cached request by one token; you are probably using the logprobs "
          "endpoint incorrectly.",
          "prompt");
    lru_.erase(it);
  } else {
    id = uuid4();
  }
  lru_.emplace_front(id, req.prompts);
  while (lru_.size() > 4) lru_.pop_back();
  return id;
}

json alpa_error_json(const ApiError& e) {
  json j = e.to_json();
  j["type"] = "error";
  j["message"] = e.message();
  j["stacktrace"] = nullptr;
  return j;
}

}  // namespace optforge::serve
