// optforge serve MODEL: the completions server (OpenAI- and alpa-compatible HTTP API, a web
// page, Prometheus metrics) with continuous batching on the CPU. SIGTERM or SIGINT shut it down
// gracefully: stop accepting, let running requests finish (up to --shutdown-grace), exit 0.
// --once PROMPT starts the same server on a free loopback port, sends one greedy completion
// through it over HTTP, prints the text and exits (a smoke test of the whole stack).
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "model/runtime.h"
#include "model_options.h"
#include "serve/chat_template.h"
#include "serve/http_client.h"
#include "serve/http_server.h"
#include "serve/server_app.h"
#include "tokenizer/bpe.h"
#include "tokenizer_options.h"
#include "util/error.h"
#include "util/human.h"
#include "util/pattern.h"

namespace optforge::cli {
namespace {

struct Options {
  TokenizerOptions tokenizer;
  RuntimeOptions runtime;
  std::string host = "127.0.0.1", api_key, model_name, once, chat_template;
  int port = 8080;
  int64_t max_batch = 32, kv_cache_tokens = 0, max_tokens_limit = 0, max_body_bytes = 1 << 20, max_connections = 64,
          max_connections_per_client = 48, max_queue = 1024, once_max_tokens = 32;
  double shutdown_grace = 10, request_timeout = 30, idle_timeout = 5, sse_keepalive = 15;
  std::vector<std::string> allowed_origins;
  bool no_prefix_caching = false;
};

// Why `v` can never equal an Origin header as browsers serialize it (lower-case scheme and
// host, no default port, no path), or "" when it can; '*' is fine. Such a value would leave CORS
// off for that site without a word, so --allowed-origins refuses it.
std::string origin_problem(const std::string& v) {
  static const Pattern origin("\\*|([a-z][a-z0-9+.-]*)://(\\[[0-9a-f:.]+\\]|[^/?#\\s:\\[\\]A-Z]+)(:([0-9]{1,5}))?");
  const auto m = origin.full_match(v);
  if (!m) return "scheme://host[:port] in lower case with no path (e.g. https://app.example), or '*'";
  if ((*m)[3]) {
    const long port = std::stol(*(*m)[3]);
    const std::string& scheme = *(*m)[0];
    if (port < 1 || port > 65535) return "the port must be 1 to 65535";
    if ((scheme == "https" && port == 443) || (scheme == "http" && port == 80))
      return "browsers leave out a scheme's default port: write it without :" + std::to_string(port);
  }
  return {};
}

CLI::Validator origin_validator() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        const std::string why = origin_problem(v);
        return why.empty() ? why : "'" + v + "' is not an origin as browsers send it: " + why;
      },
      "ORIGIN");
}

std::string default_model_name(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  return std::filesystem::is_directory(p) ? p.filename().string() : p.stem().string();
}

int once(const Options& o, serve::HttpServer& server, const serve::ApiContext& ctx) {
  const nlohmann::json req = {
      {"model", ctx.model_id}, {"prompt", o.once}, {"max_tokens", o.once_max_tokens}, {"temperature", 0}};
  serve::HttpHeaders headers = {{"Content-Type", "application/json"}};
  if (!o.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + o.api_key);
  const auto r =
      serve::http_request("127.0.0.1", server.port(), "POST", "/v1/completions", req.dump(), headers, 600000);
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (r.status != 200 || j.is_discarded()) {
    std::fprintf(stderr, "optforge serve --once: HTTP %d: %s\n", r.status, r.body.c_str());
    return 1;
  }
  std::printf("%s%s\n", o.once.c_str(), j["choices"][0]["text"].get<std::string>().c_str());
  return 0;
}

// The model's folder: the path itself when it is one, else the folder holding the file.
std::string model_folder(const std::string& path) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) return p.string();
  return p.has_parent_path() ? p.parent_path().string() : ".";
}

// --chat-template FILE, or the default, which is refused when the model's or tokenizer's folder
// carries a Jinja chat template: the model was tuned on that format, and ours would differ.
serve::ChatTemplate chat_template(const Options& o) {
  if (!o.chat_template.empty()) return serve::load_chat_template(o.chat_template);
  serve::refuse_jinja_chat_template(model_folder(o.runtime.model));
  if (!o.tokenizer.dir.empty()) serve::refuse_jinja_chat_template(o.tokenizer.dir);
  return serve::default_chat_template();
}

// The scheduler and its KV cache pool, which is reserved here, at start: a pool larger than
// the machine can map is an error naming the option, not a bare std::bad_alloc.
std::unique_ptr<serve::Scheduler> make_scheduler(const Options& o, OptModel& model, const Tokenizer& tok,
                                                 serve::Metrics& metrics) {
  serve::SchedulerOptions so;
  so.max_batch = o.max_batch;
  so.kv_cache_tokens = o.kv_cache_tokens;
  so.max_queue = o.max_queue;
  so.prefix_caching = !o.no_prefix_caching;
  try {
    return std::make_unique<serve::Scheduler>(model, tok, so, metrics);
  } catch (const std::bad_alloc&) {
    const std::string pool = o.kv_cache_tokens > 0
                                 ? "--kv-cache-tokens " + std::to_string(o.kv_cache_tokens)
                                 : std::to_string(o.max_batch) + " x " + std::to_string(model.config().max_positions) +
                                       " tokens (--max-batch x context)";
    throw Error("could not reserve memory for a KV cache pool of " + pool + "; give a smaller --kv-cache-tokens");
  }
}

void run(const Options& o) {
  // Every thread started from here on inherits this mask, so SIGTERM and SIGINT stay pending
  // for the sigwait below instead of killing the process mid-request.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const Tokenizer tok = load_tokenizer(o.tokenizer);
  const serve::ChatTemplate chat = chat_template(o);  // before the model loads: a refusal comes at once
  auto rt = open_model(o.runtime);
  const OptConfig& cfg = rt->model->config();
  serve::Metrics metrics;
  const auto scheduler_ptr = make_scheduler(o, *rt->model, tok, metrics);
  serve::Scheduler& scheduler = *scheduler_ptr;

  serve::ApiContext ctx;
  ctx.tok = &tok;
  ctx.model_id = o.model_name.empty() ? default_model_name(o.runtime.model) : o.model_name;
  ctx.vocab = cfg.vocab;
  ctx.context = cfg.max_positions;
  ctx.max_tokens_limit = o.max_tokens_limit > 0 ? o.max_tokens_limit : cfg.max_positions;
  ctx.max_n = o.max_batch;
  ctx.chat_template = chat;
  serve::ServeApp app(scheduler, metrics, ctx, o.api_key);

  serve::HttpServerOptions ho;
  ho.host = o.once.empty() ? o.host : "127.0.0.1";
  ho.port = o.once.empty() ? o.port : 0;
  ho.max_connections = o.max_connections;
  ho.max_connections_per_client = o.max_connections_per_client;
  ho.max_body_bytes = o.max_body_bytes;
  ho.request_timeout_ms = int(o.request_timeout * 1000);
  ho.idle_timeout_ms = int(o.idle_timeout * 1000);
  ho.sse_keepalive_ms = int(o.sse_keepalive * 1000);
  ho.allowed_origins = o.allowed_origins;
  serve::HttpServer server(
      ho, [&app](const serve::HttpRequest& r, serve::HttpExchange& ex) { app.handle(r, ex); },
      [&app](int status, const std::string& m) { return app.error_page(status, m); });
  app.attach(&server);
  server.start();

  int rc = 0;
  if (!o.once.empty()) {
    rc = once(o, server, ctx);
  } else {
    const uint64_t kv_bytes = uint64_t(scheduler.kv_budget()) * uint64_t(2 * cfg.layers * cfg.embed_dim) *
                              dtype_size(rt->backend->kv_dtype());
    std::fprintf(stderr,
                 "optforge serve: %s (%s, %lld parameters) on %s; batch %lld, KV cache %lld tokens in blocks of %lld "
                 "(%s)\n",
                 ctx.model_id.c_str(), o.runtime.model.c_str(), static_cast<long long>(cfg.parameter_count()),
                 rt->backend->name().c_str(), static_cast<long long>(scheduler.max_batch()),
                 static_cast<long long>(scheduler.kv_budget()), static_cast<long long>(kKvBlockSize),
                 human_bytes(kv_bytes).c_str());
    std::printf("optforge serve: listening on http://%s:%d/ (web page; OpenAI API under /v1)\n",
                o.host.find(':') != std::string::npos ? ("[" + o.host + "]").c_str() : o.host.c_str(), server.port());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "optforge serve: %s: shutting down (finishing running requests, at most %.0f s)\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", o.shutdown_grace);
  }
  app.begin_shutdown();
  server.stop_accepting();
  scheduler.shutdown(std::chrono::milliseconds(int64_t(o.shutdown_grace * 1000)));
  server.wait_connections(std::chrono::seconds(2));  // let handlers send their last bytes
  server.stop();
  if (rc != 0) throw Error("the --once request failed");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("serve", "Serve an OPT checkpoint over HTTP (OpenAI and alpa APIs, web page, metrics)");
  add_model_argument(cmd, o->runtime);
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port, printed at start)")->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' (or alpa's api_key field)");
  cmd->add_option("--model-name", o->model_name, "Model id for the API (default: the checkpoint's file name)");
  cmd->add_option("--max-batch", o->max_batch, "Sequences decoded together (continuous batching slots)")
      ->capture_default_str();
  cmd->add_option("--kv-cache-tokens", o->kv_cache_tokens,
                  "KV cache pool in tokens, shared by all sequences in blocks of 16 (default: max-batch x context)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_option("--max-tokens-limit", o->max_tokens_limit,
                  "Largest max_tokens a request may ask for (default: the context)");
  cmd->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (413 beyond)")->capture_default_str();
  cmd->add_option("--max-connections", o->max_connections, "Concurrent connections (429 beyond)")
      ->capture_default_str();
  cmd->add_option("--max-connections-per-client", o->max_connections_per_client,
                  "Concurrent connections from one client address (429 beyond)")
      ->capture_default_str();
  cmd->add_option("--request-timeout", o->request_timeout,
                  "Seconds a request head may take to arrive, from its first byte, and then its body (408 beyond)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--idle-timeout", o->idle_timeout, "Seconds a kept-alive connection may wait for its next request")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--sse-keepalive", o->sse_keepalive,
                  "Seconds of silence on an event stream before a ': keep-alive' comment is sent (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--allowed-origins", o->allowed_origins,
                  "Origins allowed to call the API from a browser (CORS), e.g. https://app.example; '*' for any. "
                  "Default: none (no CORS headers)")
      ->delimiter(',')
      ->check(origin_validator());
  cmd->add_flag("--no-prefix-caching", o->no_prefix_caching,
                "Compute every prompt in full instead of reusing the KV cache blocks of earlier prompts' prefixes");
  cmd->add_option("--max-queue", o->max_queue, "Prompts waiting for a batch slot (429 beyond)")->capture_default_str();
  cmd->add_option("--shutdown-grace", o->shutdown_grace, "Seconds running requests may take to finish on SIGTERM")
      ->capture_default_str();
  cmd->add_option("--chat-template", o->chat_template,
                  "JSON file of /v1/chat/completions' prompt format: per-role prefix and suffix, generation_prompt, "
                  "stop (docs/serving.md). Default: 'User: ...' lines, or an error if the model carries a Jinja "
                  "chat_template")
      ->check(CLI::ExistingFile);
  add_runtime_options(cmd, o->runtime);
  add_tokenizer_options(cmd, o->tokenizer);
  cmd->add_option("--once", o->once,
                  "Serve on a free loopback port, send this prompt through HTTP, print the greedy completion, exit");
  cmd->add_option("--once-max-tokens", o->once_max_tokens, "max_tokens for --once")->capture_default_str();
  cmd->callback([o] { run(*o); });
}

}  // namespace optforge::cli
