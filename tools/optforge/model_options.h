// The options every command that runs a model shares (generate, score, serve): which checkpoint,
// how many CPU threads, the head count for checkpoints that do not record it, and the KV cache's
// dtype.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "tensor/dtype.h"

namespace optforge::cli {

inline void add_model_argument(CLI::App* cmd, std::string& model) {
  cmd->add_option("model", model,
                  "Any checkpoint optforge reads: a sharded metaseq folder or prefix, a .pt/.bin/.safetensors "
                  "file, a Hugging Face or alpa folder")
      ->required();
}

// kv_dtype: "f32", "f16" or "bf16" (CLI checks it); kv_dtype_of turns it into a DType.
inline void add_runtime_options(CLI::App* cmd, int& threads, int64_t& heads, std::string& kv_dtype) {
  cmd->add_option("--threads", threads, "CPU threads for the model (default: all)");
  cmd->add_option("--heads", heads, "Attention heads, if the checkpoint does not record them")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kv-dtype", kv_dtype,
                  "KV cache dtype: f16 (half the memory of f32), bf16 or f32; attention accumulates in f32")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
}

inline DType kv_dtype_of(const std::string& name) { return *dtype_from_name(name); }

}  // namespace optforge::cli
