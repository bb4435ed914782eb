// Weight-only int8 quantization of the matmul weights (roles of Kind::Matrix), symmetric per
// output channel. The scheme, exactly (docs/inference.md says the same for a numpy reader):
//   W is the stored matrix [N, K] converted to f32 (exact for f16/bf16);
//   amax[n]  = max_k |W[n, k]|;
//   scale[n] = amax[n] / 127, one f32 division (IEEE round to nearest even);
//   q[n, k]  = round_half_to_even(W[n, k] / scale[n]) (f32 division, not a multiplication by
//              1/scale), clamped to [-127, 127]; -128 is never used, so the range is symmetric;
//   a row whose scale is 0 (all zeros, or amax so small that amax / 127 underflows to 0) gets
//   q = 0 everywhere and scale 0: no division by zero, and q * scale is 0 as W (nearly) was.
// The weight the model then computes with is q[n, k] * scale[n] in f32. Int4 (a group size
// along K) would add a scheme here and a dtype in cpu::MatrixRef; nothing else assumes int8.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/weights.h"
#include "tensor/tensor.h"

namespace optforge {

enum class Quantization : uint8_t { None, Int8 };

// "none" / "int8" (the CLI's spelling); parse returns nullopt for anything else.
std::string_view quantization_name(Quantization q);
std::optional<Quantization> quantization_from_name(std::string_view s);

// One row of the scheme above: w[K] f32 -> q[K], returns the row's scale. Non-finite input gives
// a non-finite scale, which the caller must refuse (quantize_int8 does).
float quantize_row_int8(const float* w, int64_t K, int8_t* q);

struct QuantizedMatrix {
  Tensor q;      // I8 [N, K], its own memory
  Tensor scale;  // F32 [N]
};

// The scheme over a 2-d f32/f16/bf16 tensor (an mmapped view), a block of rows at a time on the
// CPU thread pool, so no f32 copy of the matrix is ever held. Throws optforge::Error naming
// `where` (the file) and `name` (the tensor) for another dtype or shape, or a non-finite weight.
QuantizedMatrix quantize_int8(const Tensor& w, const std::string& where, const std::string& name);

// Quantizes every matmul weight of `w` in place (q in the role's slot, the scale beside it in
// OptWeights::scales); with `embeddings` also the tied token embedding / output projection.
// Weights already int8 (a stored quantized file) are kept as they are. Throws what
// quantize_int8 throws.
void quantize_weights(OptWeights& w, Quantization q, bool embeddings);

}  // namespace optforge
