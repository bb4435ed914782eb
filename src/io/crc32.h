// CRC-32 (the zip polynomial), via libdeflate's hardware-accelerated implementation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace optforge {

uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32(const void* data, size_t n) { return crc32_update(0, data, n); }

}  // namespace optforge
