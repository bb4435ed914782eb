// Helpers shared by the libFuzzer targets: splitting one input into several files' contents, and
// reading every tensor a reader hands out (so that a view pointing past its bytes is caught).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "io/crc32.h"
#include "tensor/tensor.h"

namespace optforge::fuzz {

// Splits `data` at its first `parts - 1` NUL bytes into exactly `parts` pieces (missing ones are
// empty); the last piece keeps any further NULs. Seeds join real files with "\0" this way.
inline std::vector<std::string_view> split_nul(const uint8_t* data, size_t size, size_t parts) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    size_t z = s.find('\0');
    if (z == std::string_view::npos) break;
    out.push_back(s.substr(0, z));
    s.remove_prefix(z + 1);
  }
  out.push_back(s);
  out.resize(parts);
  return out;
}

// Reads all bytes of `t` (skipping stride-0 giants, legal but slow); a view past its storage
// is then an AddressSanitizer report.
inline void touch(const Tensor& t) {
  if (t.numel() > (1 << 20)) return;
  uint32_t c = 0;
  t.for_each_chunk([&](const uint8_t* p, size_t n) { c = crc32_update(c, p, n); });
  (void)c;
}

}  // namespace optforge::fuzz
