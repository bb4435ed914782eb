// Int8 / int4 weight quantization of a model at load (the schemes: tensor/quantize.h, quantize_int4.h): the matmul
// weights (roles of Kind::Matrix), and on request the tied embedding.
#pragma once

#include <string>

#include "model/weights.h"
#include "tensor/quantize.h"
#include "tensor/quantize_int4.h"
#include "tensor/tensor.h"

namespace optforge {

// The scheme over a 2-d f32/f16/bf16 tensor (an mmapped view), now, in memory of its own: rows are
// read one at a time per thread of the CPU pool (one f32 row each), so no f32 copy of the matrix
// is ever held. q I8 [N, K], scale F32 [N]. Throws optforge::Error naming `where` (the file) and
// `name` (the tensor) for another dtype or shape, or a non-finite weight (with its row).
QuantizedTensors quantize_int8(const Tensor& w, const std::string& where, const std::string& name);

// The int4 scheme (tensor/quantize_int4.h) the same way: q U8 [N, K / 2] packed, scale F16
// [N, ceil(K / 32)]. Throws optforge::Error naming `where` and `name` for another dtype or shape,
// an odd K, or a row the scheme refuses (a non-finite weight).
QuantizedTensors quantize_int4(const Tensor& w, const std::string& where, const std::string& name);

// Quantizes every matmul weight of `w` in place: q in the role's slot, the scale in the same
// role's slot of OptWeights::model_scales / layer_scales. With `embeddings` also the tied token
// embedding / output projection. Weights already int8 (a stored quantized file) are kept as they
// are (int8 or int4 alike: --quantize int4 on an int8 file keeps int8). Throws what
// quantize_int8 / quantize_int4 throw.
void quantize_weights(OptWeights& w, Quantization q, bool embeddings);

}  // namespace optforge
