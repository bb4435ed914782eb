// Little-endian loads and stores on raw bytes (file formats are little-endian).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace optforge {

template <typename T>
inline T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
inline void append_le(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

}  // namespace optforge
