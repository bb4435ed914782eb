#include "model/runtime.h"

namespace optforge {

std::unique_ptr<ModelRuntime> open_model(const std::string& path, int threads, int64_t heads, DType kv_dtype) {
  auto rt = std::make_unique<ModelRuntime>();
  WeightLoadOptions opts;
  opts.heads = heads;
  rt->weights = load_opt_weights(path, opts);
  rt->backend = make_cpu_backend(threads, kv_dtype);
  rt->model = std::make_unique<OptModel>(rt->weights, *rt->backend);
  return rt;
}

}  // namespace optforge
