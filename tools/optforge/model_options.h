// The options every command that runs a model shares (generate, score, serve): which checkpoint,
// how many CPU threads, and the head count for checkpoints that do not record it.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace optforge::cli {

inline void add_model_argument(CLI::App* cmd, std::string& model) {
  cmd->add_option("model", model,
                  "Any checkpoint optforge reads: a sharded metaseq folder or prefix, a .pt/.bin/.safetensors "
                  "file, a Hugging Face or alpa folder")
      ->required();
}

inline void add_runtime_options(CLI::App* cmd, int& threads, int64_t& heads) {
  cmd->add_option("--threads", threads, "CPU threads for the model (default: all)");
  cmd->add_option("--heads", heads, "Attention heads, if the checkpoint does not record them");
}

}  // namespace optforge::cli
