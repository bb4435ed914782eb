#include "io/crc32.h"

#include <libdeflate.h>
#include <zlib.h>

namespace optforge {

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) { return libdeflate_crc32(crc, data, n); }

uint32_t crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  return uint32_t(crc32_combine64(crc_a, crc_b, z_off64_t(len_b)));
}

}  // namespace optforge
