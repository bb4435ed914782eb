// CRC-32 (the zip polynomial), via libdeflate's hardware-accelerated implementation; combining via zlib.
#pragma once

#include <cstddef>
#include <cstdint>

namespace optforge {

uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32(const void* data, size_t n) { return crc32_update(0, data, n); }
// CRC-32 of A||B from crc(A), crc(B) and len(B): pieces checksummed by different threads (zlib).
uint32_t crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

}  // namespace optforge
