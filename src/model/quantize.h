// Int8 weight quantization of a model at load (the scheme: tensor/quantize.h): the matmul weights
// (roles of Kind::Matrix), and on request the tied embedding.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/weights.h"
#include "tensor/quantize.h"
#include "tensor/tensor.h"

namespace optforge {

struct QuantizedMatrix {
  Tensor q;      // I8 [N, K], its own memory
  Tensor scale;  // F32 [N]
};

// The scheme over a 2-d f32/f16/bf16 tensor (an mmapped view), a row at a time on the CPU thread
// pool (one f32 row per thread), so no f32 copy of the matrix is ever held; the result is in memory. Throws
// optforge::Error naming `where` (the file) and `name` (the tensor) for another dtype or shape, or a non-finite weight.
QuantizedMatrix quantize_int8(const Tensor& w, const std::string& where, const std::string& name);

// Quantizes every matmul weight of `w` in place (q in the role's slot, the scale beside it in
// OptWeights::scales); with `embeddings` also the tied token embedding / output projection.
// Weights already int8 (a stored quantized file) are kept as they are. Throws what
// quantize_int8 throws.
void quantize_weights(OptWeights& w, Quantization q, bool embeddings);

}  // namespace optforge
