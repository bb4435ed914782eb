// The request fields OpenAI's two generation routes share (/v1/completions and
// /v1/chat/completions, and metaseq's engine aliases): the model check, the sampling and
// stopping parameters, streaming options, and the context-length check. Each route parses its
// own prompt (`prompt` or `messages`) and its own logprobs shape, then calls these, so both
// routes read every shared field the same way (docs/spec-apis.md §OpenAI completions request).
#pragma once

#include <cstdint>
#include <vector>

#include "serve/json_fields.h"
#include "serve/openai_api.h"

namespace optforge::serve {

// 64 bits from std::random_device: the seed of a request that gives none, and of ids.
uint64_t random_seed();

// `model`: required and equal to ctx.model_id when `strict` (404 model_not_found otherwise);
// when lenient (metaseq's routes) only its type is checked. Throws ApiError.
void check_model(Fields& f, const ApiContext& ctx, bool strict);

// temperature, top_p, top_k, repetition_penalty, seed, n, stop, ignore_eos, min_tokens,
// presence_penalty, frequency_penalty, logit_bias, stream, stream_options, user: read into
// r.spec and r.stream / r.include_usage. Throws ApiError 400 naming the field.
void parse_sampling_fields(Fields& f, const ApiContext& ctx, CompletionRequest& r);

// ApiError 400 (OpenAI's message) when a prompt plus max_tokens exceeds the context; the param is
// "prompt" when the prompt alone does, else `max_tokens_field`.
void check_context(const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens, const ApiContext& ctx,
                   const char* max_tokens_field);

// ApiError 400 when max_tokens exceeds --max-tokens-limit, naming `field`.
void check_max_tokens_limit(int64_t max_tokens, const ApiContext& ctx, const char* field);

}  // namespace optforge::serve
