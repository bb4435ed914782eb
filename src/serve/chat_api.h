// OpenAI's chat completions API (POST /v1/chat/completions): `messages` rendered into one prompt
// by a ChatTemplate, then run as a completion of that prompt (the same jobs, sampling and
// stopping as /v1/completions); only the request's fields and the answer's shapes are chat's:
//   response: {"id": "chatcmpl-…", "object": "chat.completion", "created", "model",
//              "choices": [{"index", "message": {"role": "assistant", "content"},
//                           "logprobs": null | {"content": [entry]}, "finish_reason"}], "usage"}
//   entry:    {"token", "logprob", "bytes": [ints] | null, "top_logprobs": [{"token", "logprob", "bytes"}]}
//   chunks:   "object": "chat.completion.chunk"; per choice a first delta {"role": "assistant",
//             "content": ""}, then {"content": text} per token, then {} with finish_reason.
// Fields and errors: docs/spec-apis.md §OpenAI chat completions request.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/chat_template.h"
#include "serve/openai_api.h"
#include "serve/response_writer.h"

namespace optforge::serve {

// `messages` as ChatMessages: roles system, developer (read as system), user, assistant; content
// a string or an array of {"type": "text", "text"} parts (joined). Throws ApiError 400 naming
// the field (param "messages", message naming e.g. messages[1].content).
std::vector<ChatMessage> parse_messages(const nlohmann::json& messages);

// The request as a completion of the rendered prompt: one prompt (</s> first, as a text prompt
// of /v1/completions), the template's stops added to the request's, r.logprobs = top_logprobs
// when `logprobs` is true (else -1). Unknown fields: 400 naming them. Throws ApiError.
CompletionRequest parse_chat_completion(const nlohmann::json& body, const ApiContext& ctx, const ChatTemplate& t);

// "chatcmpl-" and 24 random characters.
std::string new_chat_completion_id();

class ChatWriter : public ResponseWriter {
 public:
  ChatWriter(const CompletionRequest& req, const ApiContext& ctx, std::string id, int64_t created);

  std::vector<nlohmann::ordered_json> start_chunks() override;  // the role delta of every choice
  std::vector<nlohmann::ordered_json> chunks(const JobEvent& e) override;
  nlohmann::ordered_json usage_chunk() const override;
  void collect(const JobEvent& e) override { (void)chunks(e); }
  nlohmann::ordered_json response() const override;
  bool finished() const override { return finished_ == int64_t(choices_.size()); }

 private:
  struct Choice {
    std::string content;
    nlohmann::ordered_json logprobs = nlohmann::ordered_json::array();  // logprobs.content entries
    int64_t generated = 0;
    std::string finish_reason;
  };
  nlohmann::ordered_json token_entry(const GeneratedToken& t) const;
  nlohmann::ordered_json token_ref(int32_t id, float logprob) const;  // {"token", "logprob", "bytes"}
  nlohmann::ordered_json chunk(int64_t index, nlohmann::ordered_json delta, nlohmann::ordered_json logprobs,
                               const nlohmann::ordered_json& finish) const;
  nlohmann::ordered_json usage() const;

  const CompletionRequest& req_;
  const ApiContext& ctx_;
  std::string id_;
  int64_t created_;
  std::vector<Choice> choices_;
  int64_t finished_ = 0;
};

}  // namespace optforge::serve
