#include "io/crc32.h"

#include <libdeflate.h>

namespace optforge {

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
  return libdeflate_crc32(crc, data, n);
}

}  // namespace optforge
