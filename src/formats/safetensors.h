// safetensors files: an 8-byte little-endian header length, a JSON header mapping each tensor
// name to {dtype, shape, data_offsets} (plus an optional "__metadata__" of strings), then the
// tensors' bytes back to back. Reading maps the file; tensors view the mapping (zero-copy).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/mmap_file.h"
#include "tensor/tensor.h"

namespace optforge {

struct SafetensorsFile {
  std::string path;
  std::shared_ptr<MappedFile> file;
  std::vector<std::pair<std::string, Tensor>> tensors;  // in header order
  std::vector<std::pair<std::string, std::string>> metadata;
};

SafetensorsFile load_safetensors(const std::string& path);
// The same from an already mapped file (or MappedFile::from_bytes); errors name file->path().
SafetensorsFile load_safetensors(std::shared_ptr<MappedFile> file);

// Writes atomically. Tensor data is laid out largest element size first (so every tensor is
// aligned to its element size, as safetensors' own writer does); each tensor is streamed from
// its storage, views included, without a copy.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata = {{"format", "pt"}});

bool looks_like_safetensors(const uint8_t* data, uint64_t size);

}  // namespace optforge
