// The server's routes: the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models), metaseq's engine aliases,
// alpa's /completions and /logprobs, llama.cpp's /tokenize and /detokenize, /health, /metrics
// and the embedded web page. Checks the API key, turns every failure into an error object with
// the right status, and counts each answer in the metrics.
#pragma once

#include <atomic>
#include <string>

#include "serve/alpa_api.h"
#include "serve/http_server.h"
#include "serve/metrics.h"
#include "serve/openai_api.h"
#include "serve/scheduler.h"

namespace optforge::serve {

class ServeApp {
 public:
  // `api_key` empty: no authentication.
  ServeApp(Scheduler& scheduler, Metrics& metrics, ApiContext ctx, std::string api_key);

  void handle(const HttpRequest& req, HttpExchange& ex);
  // Transport-level refusals (bad HTTP, body too large, too many connections, ...).
  HttpResponse error_page(int status, const std::string& message);

  void attach(const HttpServer* server) { server_ = server; }
  void begin_shutdown() { shutting_down_.store(true); }
  const ApiContext& context() const { return ctx_; }

 private:
  // Answers the request and returns the status sent; names the route for the metrics and says
  // whether errors take alpa's shape before anything can throw.
  int route(const HttpRequest& req, HttpExchange& ex, std::string& label, bool& alpa_errors);
  void require_key(const HttpRequest& req, const nlohmann::json* body) const;
  int send_json(HttpExchange& ex, int status, const nlohmann::json& j, HttpHeaders headers = {});

  int completions(const HttpRequest& req, HttpExchange& ex, bool strict);
  int chat_completions(const HttpRequest& req, HttpExchange& ex);
  int alpa_completions(const HttpRequest& req, HttpExchange& ex);
  int alpa_logprobs(const HttpRequest& req, HttpExchange& ex);
  int tokenize(const HttpRequest& req, HttpExchange& ex);
  int detokenize(const HttpRequest& req, HttpExchange& ex);
  int models(HttpExchange& ex);

  Scheduler& scheduler_;
  Metrics& metrics_;
  ApiContext ctx_;
  std::string api_key_;
  AlpaLogprobsCache logprobs_cache_;
  const HttpServer* server_ = nullptr;
  std::atomic<bool> shutting_down_{false};
  int64_t started_;
};

}  // namespace optforge::serve
