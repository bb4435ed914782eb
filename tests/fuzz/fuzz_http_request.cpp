// libFuzzer target: any bytes a client may send on one connection go through the real HTTP
// transport (Beast's parser with the server's limits, keep-alive, pipelining, chunked bodies)
// into the real application (routes, JSON parsing, a tiny random model behind the scheduler),
// and must come back as HTTP responses: never a crash, a hang, a leak or an out-of-bounds read.
// Seed corpus: tests/fuzz/corpus/fuzz_http_request/ (valid requests, one file each).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "formats/torch_file.h"
#include "model/runtime.h"
#include "opt/config.h"
#include "opt/random_model.h"
#include "serve/http_server.h"
#include "serve/server_app.h"
#include "tokenizer/bpe.h"

namespace {

using namespace optforge;

// Everything a request can reach, built once: a one-layer random model with GPT-2's vocabulary
// (so every token the built-in tokenizer makes is in range) and small limits that keep a
// generation request to a few steps.
struct App {
  Tokenizer tok = Tokenizer::builtin();
  std::unique_ptr<ModelRuntime> rt;
  serve::Metrics metrics;
  std::unique_ptr<serve::Scheduler> scheduler;
  std::unique_ptr<serve::ServeApp> app;
  serve::HttpServerOptions options;

  App() {
    OptConfig c = *published_opt_config("125m");
    c.layers = 1, c.embed_dim = 16, c.ffn_dim = 32, c.heads = 2, c.input_dim = 16, c.max_positions = 64;
    const auto path =
        std::filesystem::temp_directory_path() / ("optforge_fuzz_http_" + std::to_string(::getpid()) + ".pt");
    save_torch_file(path.string(), random_opt_checkpoint(c, DType::F16, 7));
    rt = open_model(path.string(), 1);
    std::filesystem::remove(path);
    serve::SchedulerOptions so;
    so.max_batch = 4;
    so.max_queue = 16;
    scheduler = std::make_unique<serve::Scheduler>(*rt->model, tok, so, metrics);
    serve::ApiContext ctx;
    ctx.tok = &tok;
    ctx.model_id = "opt-fuzz";
    ctx.vocab = c.vocab;
    ctx.context = c.max_positions;
    ctx.max_tokens_limit = 4;
    ctx.max_n = so.max_batch;
    app = std::make_unique<serve::ServeApp>(*scheduler, metrics, ctx, "");
    options.max_body_bytes = 1 << 16;
    options.max_header_bytes = 4096;
    options.allowed_origins = {"http://x"};
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static App a;
  const std::string out = serve::serve_bytes(
      std::string_view(reinterpret_cast<const char*>(data), size), a.options,
      [](const serve::HttpRequest& r, serve::HttpExchange& ex) { a.app->handle(r, ex); },
      [](int status, const std::string& m) { return a.app->error_page(status, m); });
  // Whatever was answered is HTTP: a status line first.
  if (!out.empty() && out.rfind("HTTP/1.1 ", 0) != 0) __builtin_trap();
  return 0;
}
