#include "model/runtime.h"

#include "util/error.h"

namespace optforge {

std::unique_ptr<ModelRuntime> open_model(const std::string& path, int threads, int64_t heads, DType kv_dtype,
                                         Quantization quantize, bool quantize_embeddings) {
  if (quantize_embeddings && quantize == Quantization::None)
    throw Error("--quantize-embeddings needs --quantize int8 or int4", path);
  auto rt = std::make_unique<ModelRuntime>();
  WeightLoadOptions opts;
  opts.heads = heads;
  rt->weights = load_opt_weights(path, opts);
  rt->backend = make_cpu_backend(threads, kv_dtype);  // first: its thread count quantizes too
  quantize_weights(rt->weights, quantize, quantize_embeddings);
  rt->model = std::make_unique<OptModel>(rt->weights, *rt->backend);
  return rt;
}

}  // namespace optforge
