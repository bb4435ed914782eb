// Each subcommand lives in its own file and registers itself on the CLI11 app here.
// A `register_*` function adds the subcommand and its options and sets its callback.
#pragma once

#include <CLI/CLI.hpp>

namespace optforge::cli {

void register_inspect(CLI::App& app);
void register_convert(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_demo_model(CLI::App& app);
void register_generate(CLI::App& app);
void register_score(CLI::App& app);
void register_consolidate(CLI::App& app);
void register_reshard(CLI::App& app);
void register_serve(CLI::App& app);

}  // namespace optforge::cli
