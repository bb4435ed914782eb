// Weight-only int4 quantization, symmetric in groups of 32 along the input dimension K (llama.cpp's
// q4_0 rule, with an f16 scale). The scheme, exactly (docs/inference.md says the same for numpy):
//   W is the stored matrix [N, K] converted to f32 (exact for f16/bf16); row n is cut into groups
//   g = 0 .. ceil(K / 32) - 1 of 32 consecutive columns, the last one short when 32 does not
//   divide K;
//   m[n, g]     = the group's element of largest |W| (the first one, in k order, on a tie);
//   scale[n, g] = f16(m / -8): one f32 division, then rounded to f16 (nearest even). The scale
//                 takes the sign that maps m to -8, so the full range [-8, 7] is used;
//   q[n, k]     = round_half_to_even(W[n, k] / f32(scale)) (an f32 division by the f16 scale
//                 widened back to f32), clamped to [-8, 7];
//   a group whose scale is 0 (all zeros, or |m| / 8 below f16's smallest subnormal) gets q = 0
//   and scale 0; a group whose scale overflows f16 (|m| > 8 * 65504) or holds a non-finite
//   weight is refused.
// Stored: packed U8 [N, ceil(K / 2)], byte j of row n holding column 2j in its low nibble and
// column 2j + 1 in its high nibble, each as q + 8 (offset binary, 0..15); an odd K's last high
// nibble is 8 (q = 0). Scales F16 [N, ceil(K / 32)]. The weight computed with is
// q[n, k] * f32(scale[n, k / 32]) in f32.
// Measured against the alternatives (docs/inference.md): [-7, 7] with scale amax / 7 (same bytes)
// and asymmetric [0, 15] with a 4-bit zero point (+0.125 bit per weight).
#pragma once

#include <cstdint>
#include <string>

#include "tensor/quantize.h"
#include "tensor/tensor.h"

namespace optforge {

inline constexpr int64_t kInt4Group = 32;
inline constexpr const char* kInt4Scheme = "int4-group32-symmetric";

inline constexpr int64_t int4_groups(int64_t K) { return (K + kInt4Group - 1) / kInt4Group; }
inline constexpr int64_t int4_row_bytes(int64_t K) { return (K + 1) / 2; }

// One row of the scheme: w[K] f32 -> packed[int4_row_bytes(K)], scales[int4_groups(K)] (f16
// bits). Returns false (outputs unspecified) for a non-finite weight or an f16-overflowing scale,
// which callers must refuse.
bool quantize_row_int4(const float* w, int64_t K, uint8_t* packed, uint16_t* scales);

// Row of the scheme back to f32: dst[k] = q[k] * f32(scales[k / 32]).
void dequantize_row_int4(const uint8_t* packed, const uint16_t* scales, int64_t K, float* dst);

// The scheme over a 2-d f32/f16/bf16 tensor [N, K] with K even, lazily (as quantize_int8_lazy):
// q U8 [N, K / 2] and scale F16 [N, ceil(K / 32)], generated storages computed a block of rows
// at a time while a writer streams them. A non-finite weight or overflowing scale throws
// optforge::Error naming `where`, `name` and the row when its block is produced; another dtype, a
// non-matrix or an odd K throws at once.
QuantizedTensors quantize_int4_lazy(const Tensor& w, const std::string& where, const std::string& name);

// The checks quantize_int4_lazy makes at once (shared with model/quantize.h's eager version).
void check_int4_source(const Tensor& w, const std::string& where, const std::string& name);

// The message for a row the scheme refuses.
std::string int4_bad_row(int64_t row);

}  // namespace optforge
