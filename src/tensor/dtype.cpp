#include "tensor/dtype.h"

#include <array>

namespace optforge {
namespace {

struct Info {
  DType t;
  size_t size;
  std::string_view name, torch_storage, torch_name, safetensors;
};

constexpr std::array<Info, 12> kInfo{{
    {DType::F64, 8, "f64", "DoubleStorage", "float64", "F64"},
    {DType::F32, 4, "f32", "FloatStorage", "float32", "F32"},
    {DType::F16, 2, "f16", "HalfStorage", "float16", "F16"},
    {DType::BF16, 2, "bf16", "BFloat16Storage", "bfloat16", "BF16"},
    {DType::I64, 8, "i64", "LongStorage", "int64", "I64"},
    {DType::I32, 4, "i32", "IntStorage", "int32", "I32"},
    {DType::I16, 2, "i16", "ShortStorage", "int16", "I16"},
    {DType::I8, 1, "i8", "CharStorage", "int8", "I8"},
    {DType::U8, 1, "u8", "ByteStorage", "uint8", "U8"},
    {DType::Bool, 1, "bool", "BoolStorage", "bool", "BOOL"},
    {DType::C64, 8, "c64", "ComplexFloatStorage", "complex64", ""},
    {DType::C128, 16, "c128", "ComplexDoubleStorage", "complex128", ""},
}};

const Info& info(DType t) { return kInfo[static_cast<size_t>(t)]; }

}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
std::string_view dtype_name(DType t) { return info(t).name; }
std::string_view torch_storage_class(DType t) { return info(t).torch_storage; }
std::string_view torch_dtype_name(DType t) { return info(t).torch_name; }
std::string_view safetensors_dtype(DType t) { return info(t).safetensors; }

std::optional<DType> dtype_from_name(std::string_view s) {
  for (const auto& i : kInfo)
    if (s == i.name || s == i.torch_name) return i.t;
  if (s == "fp32" || s == "float") return DType::F32;
  if (s == "fp16" || s == "half") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  return std::nullopt;
}

std::optional<DType> dtype_from_torch_storage(std::string_view cls) {
  for (const auto& i : kInfo)
    if (cls == i.torch_storage) return i.t;
  return std::nullopt;
}

std::optional<DType> dtype_from_safetensors(std::string_view s) {
  for (const auto& i : kInfo)
    if (!i.safetensors.empty() && s == i.safetensors) return i.t;
  return std::nullopt;
}

bool is_floating(DType t) { return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace optforge
