// Test helper: values stored as a checkpoint or cache holds them (f32, f16 or bf16 bytes, rounded
// as torch rounds) beside the f32 values those bytes stand for, which the references compute on.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/convert.h"
#include "tensor/dtype.h"

namespace optforge::test_util {

struct Stored {
  std::vector<uint8_t> bytes;  // x.size() elements of the dtype
  std::vector<float> values;   // what the bytes stand for, in f32
};

inline Stored store(const std::vector<float>& x, DType dt) {
  Stored s{std::vector<uint8_t>(x.size() * dtype_size(dt)), std::vector<float>(x.size())};
  convert_elements(DType::F32, reinterpret_cast<const uint8_t*>(x.data()), dt, s.bytes.data(), x.size());
  convert_elements(dt, s.bytes.data(), DType::F32, reinterpret_cast<uint8_t*>(s.values.data()), x.size());
  return s;
}

}  // namespace optforge::test_util
