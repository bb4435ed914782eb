#include "serve/chat_api.h"

#include <algorithm>

#include "serve/api_error.h"
#include "serve/json_fields.h"
#include "serve/request_fields.h"
#include "tokenizer/token_label.h"

namespace optforge::serve {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

ApiError bad_message(const std::string& where, const std::string& what) {
  return bad_request(where + ": " + what, "messages");
}

// A string, or OpenAI's array of content parts, of which only text parts mean anything to OPT.
std::string parse_content(const json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw bad_message(where, "must be a string or an array of {\"type\": \"text\", \"text\"} parts");
  std::string text;
  for (size_t j = 0; j < c.size(); ++j) {
    const json& part = c[j];
    const std::string at = where + "[" + std::to_string(j) + "]";
    if (!part.is_object()) throw bad_message(at, "must be an object {\"type\": \"text\", \"text\"}");
    for (auto it = part.begin(); it != part.end(); ++it)
      if (it.key() != "type" && it.key() != "text") throw bad_message(at + "." + it.key(), "is not supported");
    if (!part.contains("type") || part["type"] != "text")
      throw bad_message(at + ".type", "only \"text\" parts are supported (OPT reads text only)");
    if (!part.contains("text") || !part["text"].is_string()) throw bad_message(at + ".text", "must be a string");
    text += part["text"].get<std::string>();
  }
  return text;
}

ChatMessage parse_message(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) throw bad_message(where, "must be an object {\"role\", \"content\"}");
  // name, tool_calls, ...: they would change the answer. Set to null they say nothing, and the
  // openai client's own reply (model_dump of a message: refusal, tool_calls ... null) comes back
  // as history in that form.
  for (auto it = m.begin(); it != m.end(); ++it)
    if (it.key() != "role" && it.key() != "content" && !it.value().is_null())
      throw bad_message(where + "." + it.key(), "is not supported by this server");
  if (!m.contains("role") || m["role"].is_null()) throw bad_message(where + ".role", "is required");
  if (!m["role"].is_string()) throw bad_message(where + ".role", "must be a string");
  std::string role = m["role"].get<std::string>();
  if (role == "developer") role = "system";  // OpenAI's newer name for system messages
  if (role != "system" && role != "user" && role != "assistant")
    throw bad_message(where + ".role", "must be \"system\", \"developer\", \"user\" or \"assistant\"; got \"" +
                                           m["role"].get<std::string>() + "\"");
  if (!m.contains("content") || m["content"].is_null()) throw bad_message(where + ".content", "is required");
  return {role, parse_content(m["content"], where + ".content")};
}

// logprobs (bool) and top_logprobs (0..20, only with logprobs), as OpenAI's chat API takes them.
void parse_chat_logprobs(Fields& f, CompletionRequest& r) {
  const bool logprobs = f.boolean("logprobs", false);
  const int64_t top = f.integer("top_logprobs", 0, 0, 20);
  if (f.has("top_logprobs") && !logprobs)
    throw bad_request("logprobs must be set to true if top_logprobs is used", "top_logprobs");
  r.logprobs = logprobs ? top : -1;
  r.spec.opts.top_logprobs = top;
  r.spec.controls.logprobs = logprobs;
}

// max_completion_tokens is OpenAI's newer name for max_tokens; absent, a reply may fill the
// context (up to --max-tokens-limit), as OpenAI's chat default is unlimited.
int64_t parse_max_tokens(Fields& f, const ApiContext& ctx, int64_t prompt_tokens, const char*& field) {
  if (f.has("max_tokens") && f.has("max_completion_tokens"))
    throw bad_request("give max_tokens or max_completion_tokens, not both", "max_completion_tokens");
  field = f.has("max_tokens") ? "max_tokens" : "max_completion_tokens";
  if (!f.has(field)) return std::clamp<int64_t>(ctx.context - prompt_tokens, 0, ctx.max_tokens_limit);
  const int64_t n = f.integer(field, 0, 0, INT64_MAX);
  check_max_tokens_limit(n, ctx, field);
  return n;
}

}  // namespace

std::vector<ChatMessage> parse_messages(const json& messages) {
  if (!messages.is_array() || messages.empty())
    throw bad_request("messages must be a non-empty array of {\"role\", \"content\"} objects", "messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) out.push_back(parse_message(messages[i], i));
  return out;
}

CompletionRequest parse_chat_completion(const json& body, const ApiContext& ctx, const ChatTemplate& t) {
  Fields f(body);
  CompletionRequest r;
  check_model(f, ctx, true);
  const json* m = f.raw("messages");
  if (!m) throw bad_request("you must provide a messages parameter", "messages");
  const std::string text = render_chat(t, parse_messages(*m));
  r.prompts = {ctx.tok->encode(text)};  // </s> first, as a text prompt of /v1/completions
  if (int64_t(r.prompts[0].size()) > ctx.context)
    throw bad_request("This model's maximum context length is " + std::to_string(ctx.context) +
                          " tokens, however your messages resulted in " + std::to_string(r.prompts[0].size()) +
                          " tokens. Please reduce the length of the messages.",
                      "messages");
  const char* field = "max_tokens";
  r.spec.max_tokens_given = f.has("max_tokens") || f.has("max_completion_tokens");
  r.spec.opts.max_tokens = parse_max_tokens(f, ctx, int64_t(r.prompts[0].size()), field);
  check_context(r.prompts, r.spec.opts.max_tokens, ctx, field);
  parse_sampling_fields(f, ctx, r);
  r.spec.opts.stop.insert(r.spec.opts.stop.end(), t.stop.begin(), t.stop.end());
  parse_chat_logprobs(f, r);
  f.reject_unknown();
  return r;
}

std::string new_chat_completion_id() { return "chat" + new_completion_id(); }

// ---- responses

ChatWriter::ChatWriter(const CompletionRequest& req, const ApiContext& ctx, std::string id, int64_t created)
    : req_(req),
      ctx_(ctx),
      id_(std::move(id)),
      created_(created),
      choices_(req.prompts.size() * size_t(req.spec.opts.n)) {}

ojson ChatWriter::token_ref(int32_t id, float logprob) const {
  // OpenAI's `bytes`: the token's own bytes (a special token's are its vocab string's), so a
  // client can join pieces of a character; null for an id without any.
  const std::string bytes(ctx_.tok->is_special(id) ? ctx_.tok->id_to_token(id) : ctx_.tok->token_bytes(id));
  ojson b = ojson::array();
  for (char c : bytes) b.push_back(int(static_cast<unsigned char>(c)));
  return {{"token", token_label(*ctx_.tok, id)}, {"logprob", logprob}, {"bytes", bytes.empty() ? ojson(nullptr) : b}};
}

ojson ChatWriter::token_entry(const GeneratedToken& t) const {
  ojson e = token_ref(t.id, t.logprob.value_or(0.0f));
  ojson top = ojson::array();
  for (const TokenLogprob& a : t.top) top.push_back(token_ref(a.id, a.logprob));
  e["top_logprobs"] = std::move(top);
  return e;
}

ojson ChatWriter::chunk(int64_t index, ojson delta, ojson logprobs, const ojson& finish) const {
  return {{"id", id_},
          {"object", "chat.completion.chunk"},
          {"created", created_},
          {"model", ctx_.model_id},
          {"choices", ojson::array({{{"index", index},
                                     {"delta", std::move(delta)},
                                     {"logprobs", std::move(logprobs)},
                                     {"finish_reason", finish}}})}};
}

std::vector<ojson> ChatWriter::start_chunks() {
  std::vector<ojson> out;
  for (size_t i = 0; i < choices_.size(); ++i)
    out.push_back(chunk(int64_t(i), {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
  return out;
}

std::vector<ojson> ChatWriter::chunks(const JobEvent& e) {
  std::vector<ojson> out;
  const int64_t index = e.index * req_.spec.opts.n + e.sample;
  if (e.kind != JobEvent::Kind::Token && e.kind != JobEvent::Kind::Finish) return out;  // chat has no echo
  Choice& c = choices_[size_t(index)];
  c.content += e.text;
  if (e.kind == JobEvent::Kind::Token) {
    c.generated += int64_t(e.tokens.size());
    ojson lp = nullptr;
    if (req_.logprobs >= 0) {
      lp = {{"content", ojson::array()}};
      for (const GeneratedToken& t : e.tokens) {
        lp["content"].push_back(token_entry(t));
        c.logprobs.push_back(token_entry(t));
      }
    }
    out.push_back(chunk(index, {{"content", e.text}}, std::move(lp), nullptr));
    return out;
  }
  c.finish_reason = e.finish_reason;
  ++finished_;
  if (!e.text.empty()) out.push_back(chunk(index, {{"content", e.text}}, nullptr, nullptr));
  out.push_back(chunk(index, ojson::object(), nullptr, e.finish_reason));
  return out;
}

ojson ChatWriter::usage() const {
  int64_t completion = 0;
  for (const Choice& c : choices_) completion += c.generated;
  return usage_json(req_.prompts, completion);
}

ojson ChatWriter::usage_chunk() const {
  return usage_chunk_json(id_, "chat.completion.chunk", created_, ctx_.model_id, usage());
}

ojson ChatWriter::response() const {
  ojson choices = ojson::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    choices.push_back({{"index", i},
                       {"message", {{"role", "assistant"}, {"content", c.content}}},
                       {"logprobs", req_.logprobs >= 0 ? ojson{{"content", c.logprobs}} : ojson(nullptr)},
                       {"finish_reason", c.finish_reason}});
  }
  return {{"id", id_},           {"object", "chat.completion"},
          {"created", created_}, {"model", ctx_.model_id},
          {"choices", choices},  {"usage", usage()}};
}

}  // namespace optforge::serve
