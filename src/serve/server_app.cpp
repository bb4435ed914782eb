#include "serve/server_app.h"

#include <ctime>

#include "serve/chat_api.h"
#include "serve/completion_runner.h"
#include "serve/json_fields.h"
#include "serve/web_assets.h"
#include "tokenizer/utf8.h"

namespace optforge::serve {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// metaseq's /v1/engines/<engine>/completions and its siblings; the engine name is ignored.
bool is_engine_route(std::string_view path) {
  for (std::string_view prefix : {"/v1/engines/", "/v2/engines/", "/engines/"})
    if (starts_with(path, prefix) && ends_with(path, "/completions") && path.size() > prefix.size() + 12) return true;
  return false;
}

// Compares without an early exit, so the key cannot be guessed byte by byte from timings.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
  return diff == 0;
}

}  // namespace

ServeApp::ServeApp(Scheduler& scheduler, Metrics& metrics, ApiContext ctx, std::string api_key)
    : scheduler_(scheduler),
      metrics_(metrics),
      ctx_(std::move(ctx)),
      api_key_(std::move(api_key)),
      started_(int64_t(std::time(nullptr))) {}

HttpResponse ServeApp::error_page(int status, const std::string& message) {
  metrics_.count_request("(transport)", status);
  return {status, "application/json", {}, dump(ApiError(status, message).to_json())};
}

int ServeApp::send_json(HttpExchange& ex, int status, const json& j, HttpHeaders headers) {
  ex.send({status, "application/json", std::move(headers), dump(j)});
  return status;
}

void ServeApp::require_key(const HttpRequest& req, const json* body) const {
  if (api_key_.empty()) return;
  if (const std::string* h = req.header("authorization")) {
    if (starts_with(*h, "Bearer ") && same_secret(std::string_view(*h).substr(7), api_key_)) return;
    throw ApiError(401, "Incorrect API key provided. You can pass the key as 'Authorization: Bearer KEY'.", {},
                   "invalid_api_key");
  }
  if (body && body->is_object() && body->contains("api_key") && (*body)["api_key"].is_string() &&
      same_secret((*body)["api_key"].get<std::string>(), api_key_))
    return;  // alpa's clients send the key in the body
  throw ApiError(401,
                 "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                 "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                 {}, "invalid_api_key");
}

void ServeApp::handle(const HttpRequest& req, HttpExchange& ex) {
  std::string label = "(unknown)";
  bool alpa = false;
  int status = 500;
  try {
    status = route(req, ex, label, alpa);
  } catch (const ApiError& e) {
    status = e.status();
    HttpHeaders allow;
    if (!e.allow().empty()) allow.emplace_back("Allow", e.allow());
    if (!ex.responded()) send_json(ex, status, alpa ? alpa_error_json(e) : e.to_json(), std::move(allow));
  } catch (const std::exception& e) {
    status = 500;
    if (!ex.responded()) send_json(ex, 500, ApiError(500, std::string("internal error: ") + e.what()).to_json());
  }
  metrics_.count_request(label, status);
}

int ServeApp::route(const HttpRequest& req, HttpExchange& ex, std::string& label, bool& alpa) {
  const std::string& p = req.path;
  auto method = [&](const char* m) {
    if (req.method != m)
      throw ApiError(405, "Method " + req.method + " is not allowed on " + p + "; use " + m + ".").allowing(m);
  };
  if (p == "/health") {
    label = p;
    method("GET");
    if (shutting_down_.load()) return send_json(ex, 503, {{"status", "shutting down"}});
    return send_json(ex, 200, {{"status", "ok"}});
  }
  if (p == "/metrics") {
    label = p;
    method("GET");
    ex.send({200,
             "text/plain; version=0.0.4; charset=utf-8",
             {},
             metrics_.render(server_ ? server_->open_connections() : 0)});
    return 200;
  }
  if (p == "/v1/models") {
    label = p;
    method("GET");
    require_key(req, nullptr);
    return models(ex);
  }
  if (p == "/v1/chat/completions") {
    label = p;
    method("POST");
    return chat_completions(req, ex);
  }
  if (p == "/v1/completions" || is_engine_route(p)) {
    label = p == "/v1/completions" ? p : "/engines/*/completions";
    method("POST");
    return completions(req, ex, p == "/v1/completions");
  }
  if (p == "/completions" || p == "/logprobs") {
    label = p;
    alpa = true;
    method("POST");
    return p == "/completions" ? alpa_completions(req, ex) : alpa_logprobs(req, ex);
  }
  if (p == "/tokenize" || p == "/detokenize") {
    label = p;
    method("POST");
    return p == "/tokenize" ? tokenize(req, ex) : detokenize(req, ex);
  }
  if (const WebAsset* a = find_web_asset(p)) {
    label = "/ (web)";
    method("GET");
    ex.send({200, std::string(a->content_type), {{"Cache-Control", "no-cache"}}, std::string(a->body)});
    return 200;
  }
  label = "(not found)";
  throw ApiError(404, "Unknown route " + req.method + " " + p + ".", {}, "unknown_url");
}

int ServeApp::models(HttpExchange& ex) {
  json m = {{"id", ctx_.model_id},
            {"object", "model"},
            {"created", started_},
            {"owned_by", "optforge"},
            {"max_model_len", ctx_.context}};
  return send_json(ex, 200, {{"object", "list"}, {"data", json::array({m})}});
}

int ServeApp::completions(const HttpRequest& req, HttpExchange& ex, bool strict) {
  require_key(req, nullptr);
  const json body = parse_json_object(req.body);
  const CompletionRequest r = parse_openai_completion(body, ctx_, strict);
  return run_completion(scheduler_, r, ctx_, ApiFlavor::OpenAI, ex);
}

int ServeApp::chat_completions(const HttpRequest& req, HttpExchange& ex) {
  require_key(req, nullptr);
  const json body = parse_json_object(req.body);
  const CompletionRequest r = parse_chat_completion(body, ctx_, ctx_.chat_template);
  ChatWriter w(r, ctx_, new_chat_completion_id(), int64_t(std::time(nullptr)));
  return run_jobs(scheduler_, r, w, ex);
}

int ServeApp::alpa_completions(const HttpRequest& req, HttpExchange& ex) {
  const json body = parse_json_object(req.body);
  require_key(req, &body);
  const CompletionRequest r = parse_alpa_completion(body, ctx_);
  return run_completion(scheduler_, r, ctx_, ApiFlavor::Alpa, ex);
}

int ServeApp::alpa_logprobs(const HttpRequest& req, HttpExchange& ex) {
  const json body = parse_json_object(req.body);
  require_key(req, &body);
  const AlpaLogprobsRequest r = parse_alpa_logprobs(body, ctx_, scheduler_.max_batch());
  const std::string cache_id = logprobs_cache_.check_and_store(r);
  const auto tops = run_next_logprobs(scheduler_, r, ex);
  if (ex.responded()) return 499;  // abandoned: the client went away
  json logprobs = json::array(), indices = json::array();
  for (const auto& top : tops) {
    json lp = json::array(), ix = json::array();
    for (const TokenLogprob& t : top) lp.push_back(t.logprob), ix.push_back(t.id);
    logprobs.push_back(std::move(lp));
    indices.push_back(std::move(ix));
  }
  return send_json(ex, 200, {{"cache_id", cache_id}, {"logprobs", logprobs}, {"indices", indices}});
}

// llama.cpp's server: {"content", "add_special", "with_pieces"} -> {"tokens": [...]}.
int ServeApp::tokenize(const HttpRequest& req, HttpExchange& ex) {
  const json body = parse_json_object(req.body);
  require_key(req, &body);
  Fields f(body);
  const std::string content = f.string("content", "");
  const bool add_special = f.boolean("add_special", false);
  const bool with_pieces = f.boolean("with_pieces", false);
  const std::vector<int32_t> ids = ctx_.tok->encode(content, add_special);
  json tokens = json::array();
  for (int32_t id : ids) {
    if (!with_pieces) {
      tokens.push_back(id);
      continue;
    }
    const std::string piece(ctx_.tok->is_special(id) ? ctx_.tok->id_to_token(id) : ctx_.tok->token_bytes(id));
    if (utf8_valid(piece)) {
      tokens.push_back({{"id", id}, {"piece", piece}});
    } else {  // part of a character: its bytes, as llama.cpp gives them
      json bytes = json::array();
      for (char c : piece) bytes.push_back(int(static_cast<unsigned char>(c)));
      tokens.push_back({{"id", id}, {"piece", bytes}});
    }
  }
  return send_json(ex, 200, {{"tokens", tokens}});
}

// llama.cpp's server: {"tokens": [...]} -> {"content": "..."}.
int ServeApp::detokenize(const HttpRequest& req, HttpExchange& ex) {
  const json body = parse_json_object(req.body);
  require_key(req, &body);
  Fields f(body);
  std::vector<int32_t> ids;
  if (const json* t = f.raw("tokens")) {
    if (!t->is_array()) throw bad_request(type_message(*t, "array", "tokens"), "tokens");
    for (const json& v : *t) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= ctx_.vocab)
        throw bad_request(type_message(v, "token id", "tokens"), "tokens");
      ids.push_back(v.get<int32_t>());
    }
  }
  return send_json(ex, 200, {{"content", ctx_.tok->decode_text(ids)}});
}

}  // namespace optforge::serve
