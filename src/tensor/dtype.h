// Element types and their names in every format we speak (torch storages, safetensors, numpy),
// plus the float conversions that must match torch bit for bit (round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace optforge {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool, C64, C128 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);                      // "f32", "bf16", ... (our CLI spelling)
std::optional<DType> dtype_from_name(std::string_view s);  // accepts f32/float32/fp32/float ...
std::string_view torch_storage_class(DType t);             // "FloatStorage" (module torch)
std::optional<DType> dtype_from_torch_storage(std::string_view cls);
std::string_view torch_dtype_name(DType t);   // "float32" as in torch.float32
std::string_view safetensors_dtype(DType t);  // "F32"; empty if safetensors has none
std::optional<DType> dtype_from_safetensors(std::string_view s);
bool is_floating(DType t);

// IEEE half and bfloat16 <-> float. float -> half/bf16 rounds to nearest even and keeps NaN a NaN,
// exactly as torch's `.to()` does.
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00);  // NaN: c10's canonical quiet NaN
  if (ax == 0x7f800000u) return uint16_t(sign | 0x7c00);
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: infinity
  if (ax < 0x38800000u) {                                 // result is subnormal or zero
    if (ax < 0x33000000u) return uint16_t(sign);          // < 2^-25: rounds to zero
    uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // 14 + (113 - e)
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15
  uint32_t out = r >> 13, rem = r & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (out & 1))) ++out;
  return uint16_t(sign | out);
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN: c10's canonical quiet NaN
  x += 0x7fff + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

}  // namespace optforge
