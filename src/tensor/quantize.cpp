#include "tensor/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {

std::string_view quantization_name(Quantization q) {
  return q == Quantization::Int8 ? "int8" : q == Quantization::Int4 ? "int4" : "none";
}

std::optional<Quantization> quantization_from_name(std::string_view s) {
  if (s == "none") return Quantization::None;
  if (s == "int8") return Quantization::Int8;
  if (s == "int4") return Quantization::Int4;
  return std::nullopt;
}

float quantize_row_int8(const float* w, int64_t K, int8_t* q) {
  // Plain comparisons, not fmax/nearbyint: those are library calls on baseline x86-64, and this
  // runs over every weight of the model at load.
  float amax = 0.0f;
  bool finite = true;
  for (int64_t k = 0; k < K; ++k) {
    const float a = std::fabs(w[k]);
    amax = a > amax ? a : amax;
    finite = finite && std::isfinite(w[k]);
  }
  const float scale = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  if (scale == 0.0f || !std::isfinite(scale)) {
    std::fill(q, q + K, int8_t(0));
    return scale;
  }
  // Round half to even as IEEE's default mode does (numpy's rint): adding and subtracting 1.5 * 2^23
  // leaves v rounded to an integer for |v| < 2^22; here |v| <= 127 and a bit.
  constexpr float kRound = 12582912.0f;
  for (int64_t k = 0; k < K; ++k) {
    const float r = (w[k] / scale + kRound) - kRound;
    q[k] = int8_t(r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r);
  }
  return scale;
}

void read_rows_f32(const Tensor& t, int64_t r0, int64_t r1, float* dst) {
  Tensor rows = t;
  rows.shape[0] = r1 - r0;
  rows.offset += r0 * t.strides[0];
  std::vector<uint8_t> bytes(size_t(rows.nbytes()));
  size_t at = 0;
  stream_tensor(rows, [&](const uint8_t* p, size_t n) {
    std::memcpy(bytes.data() + at, p, n);
    at += n;
  });
  convert_elements(t.dtype, bytes.data(), DType::F32, reinterpret_cast<uint8_t*>(dst), uint64_t(rows.numel()));
}

namespace {

// Rows read and quantized per step of a generator: bounded memory whatever the matrix.
constexpr int64_t kRowBlock = 64;

struct LazySource {
  Tensor w;
  std::string where, name;
  // Quantizes rows [r0, r1) into q (if not null) and scale (if not null).
  void rows(int64_t r0, int64_t r1, int8_t* q, float* scale) const {
    const int64_t K = w.shape[1];
    std::vector<float> f(size_t(std::min(kRowBlock, r1 - r0) * K));
    std::vector<int8_t> qb(static_cast<size_t>(K));
    for (int64_t b = r0; b < r1; b += kRowBlock) {
      const int64_t e = std::min(r1, b + kRowBlock);
      read_rows_f32(w, b, e, f.data());
      for (int64_t r = b; r < e; ++r) {
        const float s = quantize_row_int8(f.data() + (r - b) * K, K, q ? q + (r - r0) * K : qb.data());
        if (!std::isfinite(s))
          throw Error("row " + std::to_string(r) + " holds a non-finite weight: int8 quantization needs finite ones",
                      where, "tensor '" + name + "'");
        if (scale) scale[r - r0] = s;
      }
    }
  }
};

}  // namespace

QuantizedTensors quantize_int8_lazy(const Tensor& w, const std::string& where, const std::string& name) {
  const std::string what = "tensor '" + name + "'";
  if (w.dim() != 2) throw Error("int8 quantization needs a matrix, got shape " + w.shape_string(), where, what);
  if (w.dtype != DType::F32 && w.dtype != DType::F16 && w.dtype != DType::BF16)
    throw Error("int8 quantization reads f32, f16 or bf16, not " + std::string(dtype_name(w.dtype)), where, what);
  auto src = std::make_shared<const LazySource>(LazySource{w, where, name});
  const int64_t N = w.shape[0], K = w.shape[1];
  // q's bytes [off, off + n): the rows they fall in, quantized, and the overlap copied.
  auto q = Storage::generated(DType::I8, uint64_t(N * K), [src, K](uint64_t off, uint8_t* dst, size_t n) {
    const int64_t r0 = int64_t(off) / K, r1 = (int64_t(off + n) + K - 1) / K;
    std::vector<int8_t> rows(size_t((r1 - r0) * K));
    src->rows(r0, r1, rows.data(), nullptr);
    std::memcpy(dst, rows.data() + (int64_t(off) - r0 * K), n);
  });
  auto scale = Storage::generated(DType::F32, uint64_t(N), [src](uint64_t off, uint8_t* dst, size_t n) {
    const int64_t r0 = int64_t(off / 4), r1 = int64_t((off + n + 3) / 4);
    std::vector<float> s(size_t(r1 - r0));
    src->rows(r0, r1, nullptr, s.data());
    std::memcpy(dst, reinterpret_cast<const uint8_t*>(s.data()) + (off - uint64_t(r0) * 4), n);
  });
  return {Tensor::view_of(q, {N, K}), Tensor::view_of(scale, {N})};
}

}  // namespace optforge
