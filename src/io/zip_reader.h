// Reads the index of a zip archive held in memory (an mmapped .pt file) and gives byte ranges of
// its entries, without copying. Only what torch.save writes is supported: stored (uncompressed)
// entries, zip64 for archives, entries and offsets over 4 GiB. Every offset and size is checked
// against the file before use, so a truncated or corrupt file is an error, never a wild read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace optforge {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // where the entry's bytes start in the archive
  uint64_t size = 0;
  uint32_t crc32 = 0;
};

class ZipReader {
 public:
  // `path` only names the file in errors.
  ZipReader(const uint8_t* data, uint64_t size, std::string path);

  static bool looks_like_zip(const uint8_t* data, uint64_t size);
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  std::string_view bytes(const ZipEntry& e) const {
    return {reinterpret_cast<const char*>(data_ + e.data_offset), size_t(e.size)};
  }
  // Throws unless the entry's CRC-32 matches its central-directory record.
  void verify_crc(const ZipEntry& e) const;

 private:
  const uint8_t* data_;
  uint64_t size_;
  std::string path_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string_view, size_t> index_;
};

}  // namespace optforge
