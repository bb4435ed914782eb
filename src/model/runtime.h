// A model ready to run: its weights (mmapped), a backend, and the OPT model over them, kept
// together so the references between them stay valid.
#pragma once

#include <memory>
#include <string>

#include "model/backend.h"
#include "model/opt.h"
#include "model/quantize.h"
#include "model/weights.h"

namespace optforge {

struct ModelRuntime {
  OptWeights weights;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<OptModel> model;
};

// The KV cache's dtype unless asked otherwise: half the memory of f32, attention still in f32.
inline constexpr DType kDefaultKvDtype = DType::F16;

// threads: 0 = every hardware thread; heads: 0 = from the checkpoint's config; kv_dtype: the KV
// cache's dtype (F32, F16 or BF16); quantize: the matmul weights quantized at load
// (model/quantize.h; a stored int8 file is used as it is), with quantize_embeddings also the
// tied embedding / output projection.
std::unique_ptr<ModelRuntime> open_model(const std::string& path, int threads = 0, int64_t heads = 0,
                                         DType kv_dtype = kDefaultKvDtype, Quantization quantize = Quantization::None,
                                         bool quantize_embeddings = false);

}  // namespace optforge
