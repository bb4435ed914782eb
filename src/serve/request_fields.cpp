#include "serve/request_fields.h"

#include <random>
#include <string>

#include "serve/api_error.h"

namespace optforge::serve {

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

namespace {

using nlohmann::json;

std::vector<std::string> parse_stop(Fields& f) {
  const json* v = f.raw("stop");
  std::vector<std::string> stops;
  if (!v) return stops;
  if (v->is_string()) {
    stops.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > 4)
      throw bad_request("at most 4 stop sequences are allowed; got " + std::to_string(v->size()), "stop");
    for (const auto& s : *v) {
      if (!s.is_string()) throw bad_request(type_message(s, "string", "stop"), "stop");
      stops.push_back(s.get<std::string>());
    }
  } else {
    throw bad_request(type_message(*v, "string or array", "stop"), "stop");
  }
  std::erase_if(stops, [](const std::string& s) { return s.empty(); });  // an empty stop would end every text at once
  return stops;
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(Fields& f, int64_t vocab) {
  std::vector<std::pair<int32_t, float>> out;
  const json* v = f.raw("logit_bias");
  if (!v) return out;
  if (!v->is_object()) throw bad_request(type_message(*v, "object", "logit_bias"), "logit_bias");
  for (auto it = v->begin(); it != v->end(); ++it) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(it.key(), &used);
    } catch (const std::exception&) { used = 0; }
    if (used != it.key().size() || id < 0 || id >= vocab)
      throw bad_request("logit_bias: '" + it.key() + "' is not a token id of this model", "logit_bias");
    if (!it->is_number() || it->get<double>() < -100 || it->get<double>() > 100)
      throw bad_request("logit_bias: the bias of token " + it.key() + " must be a number between -100 and 100",
                        "logit_bias");
    out.emplace_back(int32_t(id), it->get<float>());
  }
  return out;
}

}  // namespace

void check_model(Fields& f, const ApiContext& ctx, bool strict) {
  if (const json* m = f.raw("model")) {
    if (!m->is_string()) throw bad_request(type_message(*m, "string", "model"), "model");
    if (strict && m->get<std::string>() != ctx.model_id)
      throw ApiError(
          404, "The model `" + m->get<std::string>() + "` does not exist. This server serves `" + ctx.model_id + "`.",
          "model", "model_not_found");
  } else if (strict) {
    throw bad_request("you must provide a model parameter", "model");
  }
}

void check_max_tokens_limit(int64_t max_tokens, const ApiContext& ctx, const char* field) {
  if (max_tokens > ctx.max_tokens_limit)
    throw bad_request(std::string(field) + " is " + std::to_string(max_tokens) + "; this server allows at most " +
                          std::to_string(ctx.max_tokens_limit),
                      field);
}

void check_context(const std::vector<std::vector<int32_t>>& prompts, int64_t max_tokens, const ApiContext& ctx,
                   const char* max_tokens_field) {
  for (const auto& p : prompts) {
    const int64_t total = int64_t(p.size()) + max_tokens;
    if (total > ctx.context)
      throw bad_request("This model's maximum context length is " + std::to_string(ctx.context) +
                            " tokens, however you requested " + std::to_string(total) + " tokens (" +
                            std::to_string(p.size()) + " in your prompt; " + std::to_string(max_tokens) +
                            " for the completion). Please reduce your prompt; or completion length.",
                        p.size() > size_t(ctx.context) ? "prompt" : max_tokens_field);
  }
}

void parse_sampling_fields(Fields& f, const ApiContext& ctx, CompletionRequest& r) {
  GenerateOptions& o = r.spec.opts;
  o.sampling.temperature = float(f.number("temperature", 1.0, 0.0, 2.0));
  o.sampling.top_p = float(f.number("top_p", 1.0, 0.0, 1.0));
  o.sampling.top_k = f.integer("top_k", 0, 0, ctx.vocab);                                   // extension (HF's), 0 = off
  o.sampling.repetition_penalty = float(f.number("repetition_penalty", 1.0, 0.01, 100.0));  // extension
  o.sampling.seed = f.has("seed") ? uint64_t(f.integer("seed", 0, INT64_MIN, INT64_MAX)) : random_seed();
  o.n = f.integer("n", 1, 1, ctx.max_n);
  o.stop = parse_stop(f);
  o.stop_at_eos = !f.boolean("ignore_eos", false);                        // extension
  r.spec.controls.min_tokens = f.integer("min_tokens", 0, 0, INT64_MAX);  // extension (alpa, metaseq)
  r.spec.controls.presence_penalty = float(f.number("presence_penalty", 0.0, -2.0, 2.0));
  r.spec.controls.frequency_penalty = float(f.number("frequency_penalty", 0.0, -2.0, 2.0));
  r.spec.controls.logit_bias = parse_logit_bias(f, ctx.vocab);
  r.stream = f.boolean("stream", false);
  if (const json* so = f.raw("stream_options")) {
    if (!r.stream)
      throw bad_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
    if (!so->is_object()) throw bad_request(type_message(*so, "object", "stream_options"), "stream_options");
    Fields sf(*so);
    r.include_usage = sf.boolean("include_usage", false);
    sf.reject_unknown();
  }
  (void)f.string("user", "");
}

}  // namespace optforge::serve
