// optforge: one program for OPT checkpoints: inspect, convert, consolidate, reshard, generate, serve.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "io/temp_registry.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"optforge: read, consolidate, reshard, convert and run OPT checkpoints"};
  app.require_subcommand(1);
  optforge::install_cleanup_on_signal();
  app.set_version_flag("--version", "optforge 0.1.0");
  optforge::cli::register_inspect(app);
  optforge::cli::register_convert(app);
  optforge::cli::register_tokenize(app);
  optforge::cli::register_demo_model(app);
  optforge::cli::register_generate(app);
  optforge::cli::register_score(app);
  optforge::cli::register_consolidate(app);
  optforge::cli::register_reshard(app);
  optforge::cli::register_serve(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) { return app.exit(e); } catch (const optforge::Error& e) {
    std::fprintf(stderr, "optforge: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "optforge: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
