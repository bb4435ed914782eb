#include "model/weights.h"

#include "convert/opt_tensors.h"
#include "tensor/quantize.h"
#include "util/error.h"

namespace optforge {
namespace {

// A weight the kernels can read directly: in memory, contiguous, f32/f16/bf16. Views of an
// mmapped file stay views; tensors produced on the fly (a sharded checkpoint consolidated while
// loading) or stored as strided views are materialised once.
// An I8 or U8 (int4) matrix comes with its scales (read_opt_model checked them).
Tensor ready(const Tensor& t, const OptTensors& m, const std::string& name) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16 && t.dtype != DType::I8 &&
      t.dtype != DType::U8)
    throw Error("dtype " + std::string(dtype_name(t.dtype)) + " is not supported (f32, f16, bf16, int8/int4 matrices)",
                m.layout, name);
  return t.is_contiguous() && !t.storage->is_lazy() ? t : t.contiguous();
}

}  // namespace

OptWeights load_opt_weights(const std::string& path, const WeightLoadOptions& opts) {
  ReadModelOptions ro;
  ro.heads = opts.heads;
  // No guess: a checkpoint that records no head count needs --heads (or a published shape).
  ro.threads = 2;
  const OptTensors m = read_opt_model(path, ro);  // every layout optforge reads, names mapped once
  OptWeights w;
  w.description = path + " (" + m.layout + ")";
  w.config = m.config;
  w.config.validate_token_ids(path);
  w.layers.resize(size_t(w.config.layers));
  w.layer_scales.resize(size_t(w.config.layers));
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const RoleRef& r = m.roles[i];
    RoleTensors& slot = r.layer < 0 ? w.model : w.layers[size_t(r.layer)];
    slot[size_t(r.role)] = ready(m.tensors[i].second, m, m.tensors[i].first);
    if (auto it = m.scales.find(i); it != m.scales.end())
      (r.layer < 0 ? w.model_scales : w.layer_scales[size_t(r.layer)])[size_t(r.role)] =
          ready(it->second, m, m.tensors[i].first + std::string(kScaleSuffix));
  }
  return w;
}

}  // namespace optforge
