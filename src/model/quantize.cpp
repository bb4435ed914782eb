#include "model/quantize.h"

#include <atomic>
#include <cmath>
#include <vector>

#include "kernels/cpu/matrix.h"
#include "kernels/cpu/threads.h"
#include "util/error.h"

namespace optforge {

QuantizedTensors quantize_int8(const Tensor& w, const std::string& where, const std::string& name) {
  const std::string what = "tensor '" + name + "'";
  if (w.dim() != 2) throw Error("int8 quantization needs a matrix, got shape " + w.shape_string(), where, what);
  if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
    throw Error("int8 quantization reads f32, f16 or bf16, not " + std::string(dtype_name(w.dtype)), where, what);
  const Tensor src = w.is_contiguous() && !w.storage->is_lazy() ? w : w.contiguous();
  const int64_t N = w.shape[0], K = w.shape[1];
  QuantizedTensors out{Tensor::empty(DType::I8, {N, K}), Tensor::empty(DType::F32, {N})};
  auto* q = reinterpret_cast<int8_t*>(out.q.storage->mutable_data());
  auto* scale = reinterpret_cast<float*>(out.scale.storage->mutable_data());
  const cpu::MatrixRef m{src.dtype, src.data(), N, K};
  std::atomic<int64_t> bad{-1};  // a row with a non-finite weight (parallel_for's fn must not throw)
  cpu::parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(K));  // one row in f32 at a time per thread
    for (int64_t r = r0; r < r1; ++r) {
      cpu::load_row(m, r, row.data());
      scale[r] = quantize_row_int8(row.data(), K, q + r * K);
      if (!std::isfinite(scale[r])) bad = r;
    }
  });
  if (bad >= 0)
    throw Error("row " + std::to_string(bad.load()) + " holds a non-finite weight: int8 quantization needs finite ones",
                where, what);
  return out;
}

QuantizedTensors quantize_int4(const Tensor& w, const std::string& where, const std::string& name) {
  check_int4_source(w, where, name);
  const Tensor src = w.is_contiguous() && !w.storage->is_lazy() ? w : w.contiguous();
  const int64_t N = w.shape[0], K = w.shape[1], B = int4_row_bytes(K), G = int4_groups(K);
  QuantizedTensors out{Tensor::empty(DType::U8, {N, B}), Tensor::empty(DType::F16, {N, G})};
  auto* q = out.q.storage->mutable_data();
  auto* scale = reinterpret_cast<uint16_t*>(out.scale.storage->mutable_data());
  const cpu::MatrixRef m{src.dtype, src.data(), N, K};
  std::atomic<int64_t> bad{-1};  // a refused row (parallel_for's fn must not throw)
  cpu::parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(K));  // one row in f32 at a time per thread
    for (int64_t r = r0; r < r1; ++r) {
      cpu::load_row(m, r, row.data());
      if (!quantize_row_int4(row.data(), K, q + r * B, scale + r * G)) bad = r;
    }
  });
  if (bad >= 0) throw Error(int4_bad_row(bad.load()), where, "tensor '" + name + "'");
  return out;
}

void quantize_weights(OptWeights& w, Quantization q, bool embeddings) {
  if (q == Quantization::None) return;
  auto one = [&](RoleTensors& slots, RoleTensors& scales, Role r, int64_t layer) {
    std::optional<Tensor>& t = slots[size_t(r)];
    if (!t || t->dtype == DType::I8 || t->dtype == DType::U8) return;  // absent, or stored quantized already
    const std::string name = role_name(role_spec(r), Layout::Hf, layer);
    QuantizedTensors qm =
        q == Quantization::Int4 ? quantize_int4(*t, w.description, name) : quantize_int8(*t, w.description, name);
    t = std::move(qm.q);
    scales[size_t(r)] = std::move(qm.scale);
  };
  w.layer_scales.resize(w.layers.size());  // scales of a stored int8 file stay
  for (size_t r = 0; r < kRoleCount; ++r) {
    const RoleSpec& spec = role_spec(Role(r));
    const bool wanted = spec.is_matmul() || (embeddings && Role(r) == Role::TokenEmbed);
    if (!wanted) continue;
    if (spec.scope == Scope::Model)
      one(w.model, w.model_scales, Role(r), 0);
    else
      for (size_t l = 0; l < w.layers.size(); ++l) one(w.layers[l], w.layer_scales[l], Role(r), int64_t(l));
  }
}

}  // namespace optforge
