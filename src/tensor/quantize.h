// Weight-only int8 quantization, symmetric per output channel (row). The scheme, exactly
// (docs/inference.md says the same for a numpy reader):
//   W is the stored matrix [N, K] converted to f32 (exact for f16/bf16);
//   amax[n]  = max_k |W[n, k]|;
//   scale[n] = amax[n] / 127, one f32 division (IEEE, round to nearest even);
//   q[n, k]  = round_half_to_even(W[n, k] / scale[n]) (an f32 division, not a multiplication by
//              1/scale), clamped to [-127, 127]; -128 is never used, so the range is symmetric;
//   a row whose scale is 0 (all zeros, or amax so small that amax / 127 underflows to 0) gets
//   q = 0 everywhere and scale 0: no division by zero, and q * scale = 0 as W (nearly) was.
// The weight then computed with is q[n, k] * scale[n] in f32. Int4 (groups along K) is
// tensor/quantize_int4.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace optforge {

enum class Quantization : uint8_t { None, Int8, Int4 };  // Int4: tensor/quantize_int4.h

// "none" / "int8" / "int4" (the CLI's spelling); parse returns nullopt for anything else.
std::string_view quantization_name(Quantization q);
std::optional<Quantization> quantization_from_name(std::string_view s);

// How a stored file names the scheme (safetensors __metadata__ key and value), and the suffix of
// a matrix's scale tensor: "fc1.weight" (I8 [N, K]) has "fc1.weight_scale" (F32 [N]) beside it.
inline constexpr const char* kQuantizationKey = "optforge_quantization";
inline constexpr const char* kInt8Scheme = "int8-per-channel-symmetric";
inline constexpr std::string_view kScaleSuffix = "_scale";

// One row of the scheme: w[K] f32 -> q[K]; returns the row's scale. Non-finite input gives a
// non-finite scale (and q all 0), which callers must refuse.
float quantize_row_int8(const float* w, int64_t K, int8_t* q);

struct QuantizedTensors {
  Tensor q;      // I8 [N, K]
  Tensor scale;  // F32 [N]
};

// The scheme over a 2-d f32/f16/bf16 tensor (any view, lazy casts and generated storages
// included) without computing anything now: q and scale are generated storages whose bytes are
// computed, a block of rows at a time, while a writer streams them (the source rows are read
// twice: once for the scales, once for q). A non-finite weight throws optforge::Error naming
// `where` and `name` when its block is produced. Throws the same at once for another dtype or a
// non-matrix.
QuantizedTensors quantize_int8_lazy(const Tensor& w, const std::string& where, const std::string& name);

// Rows [r0, r1) of a 2-d tensor (any view or lazy storage) as f32 into dst[(r1 - r0) * cols].
void read_rows_f32(const Tensor& t, int64_t r0, int64_t r1, float* dst);

}  // namespace optforge
