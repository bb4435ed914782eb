// What turns a request's job events into an API's answer: a whole JSON response, or the chunks
// of a server-sent event stream. /v1/completions (CompletionWriter) and /v1/chat/completions
// (ChatWriter) differ only here; run_completion drives either the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/job.h"

namespace optforge::serve {

class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;

  // Streaming: the chunks sent before any event (possibly none), then those each event produces.
  virtual std::vector<nlohmann::ordered_json> start_chunks() = 0;
  virtual std::vector<nlohmann::ordered_json> chunks(const JobEvent& e) = 0;
  // stream_options.include_usage: the last chunk, with empty choices and usage.
  virtual nlohmann::ordered_json usage_chunk() const = 0;

  // Whole response: every event collect()ed, then response().
  virtual void collect(const JobEvent& e) = 0;
  virtual nlohmann::ordered_json response() const = 0;

  // Every choice has its Finish event.
  virtual bool finished() const = 0;
};

// OpenAI's usage object: the tokens of every prompt, and `completion` tokens generated over all
// samples (best_of's unreturned ones too: OpenAI bills them).
inline nlohmann::ordered_json usage_json(const std::vector<std::vector<int32_t>>& prompts, int64_t completion) {
  int64_t prompt = 0;
  for (const auto& p : prompts) prompt += int64_t(p.size());
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// stream_options.include_usage's last chunk of a response of `object` type: empty choices, usage.
inline nlohmann::ordered_json usage_chunk_json(const std::string& id, const char* object, int64_t created,
                                               const std::string& model, nlohmann::ordered_json usage) {
  return {{"id", id},
          {"object", object},
          {"created", created},
          {"model", model},
          {"choices", nlohmann::ordered_json::array()},
          {"usage", std::move(usage)}};
}

}  // namespace optforge::serve
