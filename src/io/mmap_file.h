// A read-only memory map of a whole file. Readers hand out views into it; the mapping lives as
// long as any view (shared_ptr). Inputs are never written: the map is PROT_READ, MAP_PRIVATE.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace optforge {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // An in-memory copy standing in for a file (fuzzing, tests); `name` is used in errors.
  static std::shared_ptr<MappedFile> from_bytes(const void* data, size_t size, const std::string& name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_t(size_)}; }
  // Tells the kernel we are done with [offset, offset+len): lets it drop those pages, so
  // streaming over a file larger than RAM keeps a small resident set.
  void advise_done(uint64_t offset, uint64_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  // from_bytes() only; exactly `size` bytes, so that AddressSanitizer catches a read one past the end.
  std::vector<uint8_t> owned_;
  // open() only: the file's identity, counted as an input while mapped (io/input_files.h).
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  bool is_input_ = false;
};

// Whole file into memory (for small files: json, text).
std::string read_text_file(const std::string& path);

}  // namespace optforge
