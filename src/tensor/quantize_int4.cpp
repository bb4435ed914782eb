#include "tensor/quantize_int4.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "tensor/dtype.h"
#include "util/error.h"

namespace optforge {
namespace {

// Round half to even as IEEE's default mode does (numpy's rint): adding and subtracting 1.5 * 2^23
// rounds any |v| < 2^22; larger |v| are clamped anyway, so they are clamped first.
float rint_small(float v) {
  constexpr float kRound = 12582912.0f;
  v = v > 64.0f ? 64.0f : v < -64.0f ? -64.0f : v;
  return (v + kRound) - kRound;
}

// One group of n <= 32 values: its f16 scale, and q + 8 per value into nib[n]. False when refused.
bool quantize_group(const float* w, int64_t n, uint16_t* scale, uint8_t* nib) {
  float m = 0.0f, am = 0.0f;
  for (int64_t k = 0; k < n; ++k) {
    if (!std::isfinite(w[k])) return false;
    const float a = std::fabs(w[k]);
    if (a > am) am = a, m = w[k];  // strict: the first of equal magnitudes wins
  }
  *scale = f32_to_f16(m / -8.0f);
  const float s = f16_to_f32(*scale);
  if (!std::isfinite(s)) return false;
  for (int64_t k = 0; k < n; ++k) {
    const float r = s == 0.0f ? 0.0f : rint_small(w[k] / s);
    nib[k] = uint8_t(int(r > 7.0f ? 7.0f : r < -8.0f ? -8.0f : r) + 8);
  }
  return true;
}

}  // namespace

bool quantize_row_int4(const float* w, int64_t K, uint8_t* packed, uint16_t* scales) {
  std::memset(packed, 0x88, size_t(int4_row_bytes(K)));  // an odd K's last high nibble: q = 0
  uint8_t nib[kInt4Group];
  for (int64_t g = 0; g * kInt4Group < K; ++g) {
    const int64_t k0 = g * kInt4Group, n = std::min(kInt4Group, K - k0);
    if (!quantize_group(w + k0, n, scales + g, nib)) return false;
    for (int64_t k = 0; k < n; ++k) {
      uint8_t& b = packed[(k0 + k) / 2];
      b = (k0 + k) % 2 ? uint8_t((b & 0x0f) | nib[k] << 4) : uint8_t((b & 0xf0) | nib[k]);
    }
  }
  return true;
}

void dequantize_row_int4(const uint8_t* packed, const uint16_t* scales, int64_t K, float* dst) {
  for (int64_t k = 0; k < K; ++k) {
    const int nib = k % 2 ? packed[k / 2] >> 4 : packed[k / 2] & 0x0f;
    dst[k] = float(nib - 8) * f16_to_f32(scales[k / kInt4Group]);
  }
}

std::string int4_bad_row(int64_t row) {
  return "row " + std::to_string(row) +
         " holds a non-finite weight or one beyond 8 * 65504 (an f16 scale): int4 quantization needs finite ones";
}

void check_int4_source(const Tensor& w, const std::string& where, const std::string& name) {
  const std::string what = "tensor '" + name + "'";
  if (w.dim() != 2) throw Error("int4 quantization needs a matrix, got shape " + w.shape_string(), where, what);
  if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
    throw Error("int4 quantization reads f32, f16 or bf16, not " + std::string(dtype_name(w.dtype)), where, what);
  // The packed [N, K / 2] then says K (every OPT matrix has an even K).
  if (w.shape[1] % 2)
    throw Error("int4 quantization needs an even number of columns, got " + w.shape_string(), where, what);
}

namespace {

constexpr int64_t kRowBlock = 64;  // rows read and quantized per step: bounded memory

struct LazyInt4 {
  Tensor w;
  std::string where, name;
  // Rows [r0, r1) quantized into packed[(r1 - r0) * K / 2] and scales[(r1 - r0) * G].
  void rows(int64_t r0, int64_t r1, uint8_t* packed, uint16_t* scales) const {
    const int64_t K = w.shape[1], B = int4_row_bytes(K), G = int4_groups(K);
    std::vector<float> f(size_t(std::min(kRowBlock, r1 - r0) * K));
    for (int64_t b = r0; b < r1; b += kRowBlock) {
      const int64_t e = std::min(r1, b + kRowBlock);
      read_rows_f32(w, b, e, f.data());
      for (int64_t r = b; r < e; ++r)
        if (!quantize_row_int4(f.data() + (r - b) * K, K, packed + (r - r0) * B, scales + (r - r0) * G))
          throw Error(int4_bad_row(r), where, "tensor '" + name + "'");
    }
  }
};

}  // namespace

QuantizedTensors quantize_int4_lazy(const Tensor& w, const std::string& where, const std::string& name) {
  check_int4_source(w, where, name);
  auto src = std::make_shared<const LazyInt4>(LazyInt4{w, where, name});
  const int64_t N = w.shape[0], K = w.shape[1], B = int4_row_bytes(K), G = int4_groups(K);
  // The bytes [off, off + n) of one output: the rows they fall in, quantized, and the overlap
  // copied (both outputs quantize whole rows; `scales_out` picks which one is copied).
  auto gen = [src, B, G](bool scales_out) {
    const int64_t row_bytes = scales_out ? G * 2 : B;
    return [src, B, G, row_bytes, scales_out](uint64_t off, uint8_t* dst, size_t n) {
      const int64_t r0 = int64_t(off) / row_bytes, r1 = (int64_t(off + n) + row_bytes - 1) / row_bytes;
      std::vector<uint8_t> packed(size_t((r1 - r0) * B));
      std::vector<uint16_t> scales(size_t((r1 - r0) * G));
      src->rows(r0, r1, packed.data(), scales.data());
      const uint8_t* from = scales_out ? reinterpret_cast<const uint8_t*>(scales.data()) : packed.data();
      std::memcpy(dst, from + (int64_t(off) - r0 * row_bytes), n);
    };
  };
  auto q = Storage::generated(DType::U8, uint64_t(N * B), gen(false));
  auto scale = Storage::generated(DType::F16, uint64_t(N * G), gen(true));
  return {Tensor::view_of(q, {N, B}), Tensor::view_of(scale, {N, G})};
}

}  // namespace optforge
