// The options every command that runs a model shares (generate, score, serve): which checkpoint,
// how many CPU threads, the head count for checkpoints that do not record it, the KV cache's
// dtype and the weights' quantization.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "model/runtime.h"
#include "tensor/dtype.h"

namespace optforge::cli {

struct RuntimeOptions {
  std::string model;                                  // the checkpoint's path
  int threads = 0;                                    // 0: every hardware thread
  int64_t heads = 0;                                  // 0: from the checkpoint's config
  std::string kv_dtype{dtype_name(kDefaultKvDtype)};  // "f32", "f16" or "bf16" (CLI checks it)
  std::string quantize = "none";                      // "none", "int8" or "int4" (CLI checks it)
  bool quantize_embeddings = false;                   // needs quantize int8/int4 (CLI checks it)
};

// The positional MODEL argument (added first, before a command's other positionals).
inline void add_model_argument(CLI::App* cmd, RuntimeOptions& o) {
  cmd->add_option("model", o.model,
                  "Any checkpoint optforge reads: a sharded metaseq folder or prefix, a .pt/.bin/.safetensors "
                  "file, a Hugging Face or alpa folder")
      ->required();
}

// --threads, --heads, --kv-dtype, --quantize, --quantize-embeddings.
inline void add_runtime_options(CLI::App* cmd, RuntimeOptions& o) {
  cmd->add_option("--threads", o.threads, "CPU threads for the model (default: all)");
  cmd->add_option("--heads", o.heads, "Attention heads, if the checkpoint does not record them")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  cmd->add_option("--kv-dtype", o.kv_dtype,
                  "KV cache dtype: f16 (half the memory of f32), bf16 or f32; attention accumulates in f32")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  auto* q = cmd->add_option("--quantize", o.quantize,
                            "Weight quantization at load: int8 (matmul weights, symmetric per output channel), "
                            "int4 (groups of 32 along K, f16 scales) or none; a file stored quantized is used as "
                            "it is")
                ->check(CLI::IsMember({"none", "int8", "int4"}))
                ->capture_default_str();
  cmd->add_flag("--quantize-embeddings", o.quantize_embeddings,
                "With --quantize int8/int4: the tied token embedding / output projection too, in the same "
                "scheme (default: as stored)")
      ->needs(q);
}

// The model the options name, ready to run. Throws what open_model (model/runtime.h) throws.
inline std::unique_ptr<ModelRuntime> open_model(const RuntimeOptions& o) {
  return optforge::open_model(o.model, o.threads, o.heads, *dtype_from_name(o.kv_dtype),
                              *quantization_from_name(o.quantize), o.quantize_embeddings);
}

}  // namespace optforge::cli
