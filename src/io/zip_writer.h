// Writes a zip archive the way torch.save does, so torch.load reads it: stored entries, each
// entry's data aligned to 64 bytes (padding in the local header's extra field, id "FB"), CRC-32,
// zip64 records where sizes or offsets pass 4 GiB. Entries are streamed: begin, write, end.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "io/atomic_file.h"

namespace optforge {

// The byte formats both writers share: this streaming one and the planned, parallel one
// (checkpoint/writer.h), which knows every offset in advance and pwrites pieces out of order.
struct ZipRecord {
  std::string name;
  uint64_t header_offset = 0, size = 0;
  uint32_t crc = 0;
};
// The local header (with the zip64 extra if needed and "FB" padding to a 64-byte boundary) of a
// record whose header starts at r.header_offset; its length tells where the data starts.
std::string zip_local_header(const ZipRecord& r);
// The central directory, zip64 end records if needed, and the end record, for a directory that
// starts at cd_start.
std::string zip_central_directory(const std::vector<ZipRecord>& records, uint64_t cd_start);

class ZipWriter {
 public:
  explicit ZipWriter(AtomicFile& out) : out_(out) {}

  void add(const std::string& name, std::string_view data);
  // Streaming form: exactly `size` bytes must be written before end_entry().
  void begin_entry(const std::string& name, uint64_t size);
  void write(const void* data, size_t n);
  void end_entry();
  uint32_t last_crc32() const { return records_.empty() ? 0 : records_.back().crc; }
  // Writes the central directory and end records. The AtomicFile is committed by the caller.
  void finish();

 private:
  AtomicFile& out_;
  std::vector<ZipRecord> records_;
  bool open_ = false;
  uint64_t written_ = 0;
  uint32_t crc_ = 0;
};

}  // namespace optforge
