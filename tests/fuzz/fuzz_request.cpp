// libFuzzer target: request bodies through the server's own parsers, exactly as the routes call
// them (parse_json_object, then the route's parser), with the built-in OPT tokenizer and no model.
// The first byte picks the route, the rest is the body:
//   'o'  POST /v1/completions             parse_openai_completion(strict)
//   'e'  POST /v1/engines/*/completions   parse_openai_completion(lenient, metaseq's routes)
//   'a'  POST /completions  (alpa)        parse_alpa_completion
//   'l'  POST /logprobs     (alpa)        parse_alpa_logprobs + the cache_id check
//   'c'  POST /v1/chat/completions        parse_chat_completion (the default chat template)
// (Raw HTTP bytes, head and framing included, are fuzz_http_request's.)
// A body either parses or gives an ApiError with a 4xx status; a parsed request must hold only
// token ids inside the embedding and prompts that fit the context.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serve/alpa_api.h"
#include "serve/api_error.h"
#include "serve/chat_api.h"
#include "serve/json_fields.h"
#include "serve/openai_api.h"
#include "tokenizer/bpe.h"

namespace {

using namespace optforge::serve;

const ApiContext& context() {
  static const optforge::Tokenizer tok = optforge::Tokenizer::builtin();
  static const ApiContext ctx = [] {
    ApiContext c;
    c.tok = &tok;
    c.model_id = "opt-125m";
    c.max_n = 8;
    return c;
  }();
  return ctx;
}

void check_prompts(const std::vector<std::vector<int32_t>>& prompts, const ApiContext& ctx) {
  if (prompts.empty()) std::abort();
  for (const auto& p : prompts) {
    if (p.empty() || int64_t(p.size()) > ctx.context) std::abort();
    for (int32_t id : p)
      if (id < 0 || id >= ctx.vocab) std::abort();
  }
}

void parse(char route, const std::string& body, const ApiContext& ctx) {
  const nlohmann::json j = parse_json_object(body);
  if (route == 'o' || route == 'e' || route == 'a') {
    CompletionRequest r = route == 'a' ? parse_alpa_completion(j, ctx) : parse_openai_completion(j, ctx, route == 'o');
    check_prompts(r.prompts, ctx);
    if (r.spec.opts.n < 1 || r.spec.opts.n > ctx.max_n || r.spec.opts.max_tokens > ctx.max_tokens_limit) std::abort();
  } else if (route == 'c') {
    CompletionRequest r = parse_chat_completion(j, ctx, ctx.chat_template);
    check_prompts(r.prompts, ctx);
    if (r.prompts.size() != 1 || r.spec.opts.n < 1 || r.spec.opts.n > ctx.max_n ||
        r.spec.opts.max_tokens > ctx.max_tokens_limit ||
        int64_t(r.prompts[0].size()) + r.spec.opts.max_tokens > ctx.context)
      std::abort();
  } else if (route == 'l') {
    AlpaLogprobsRequest r = parse_alpa_logprobs(j, ctx, ctx.max_n);
    check_prompts(r.prompts, ctx);
    AlpaLogprobsCache cache;  // a fresh server: a given cache_id is unknown, none gets a new id
    r.cache_id = cache.check_and_store(r);
    try {  // the same prompts again under that id: refused, they extend nothing
      cache.check_and_store(r);
      std::abort();
    } catch (const ApiError&) {}
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ApiContext& ctx = context();
  try {
    parse(char(data[0]), std::string(reinterpret_cast<const char*>(data) + 1, size - 1), ctx);
  } catch (const ApiError& e) {
    if (e.status() < 400 || e.status() > 499) std::abort();
  }
  return 0;
}
