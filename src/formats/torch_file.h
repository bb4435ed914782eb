// PyTorch's `.pt` files, both containers torch.save writes:
//  - zip (torch >= 1.6): <root>/data.pkl (protocol-2 pickle), <root>/data/<key> (one stored,
//    64-byte aligned record per storage), <root>/version, maybe <root>/byteorder and others;
//  - legacy: five concatenated pickles (magic number, protocol version, sys info, the object,
//    the storage keys) followed by each storage as an int64 element count and its raw bytes.
// Reading maps the file and hands out tensors that view the mapping: nothing is copied.
// Writing produces the zip container that torch.load(weights_only=True) loads bit-exactly.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/mmap_file.h"
#include "pickle/unpickler.h"
#include "pickle/value.h"

namespace optforge {

struct TorchFile {
  std::string path;
  std::shared_ptr<MappedFile> file;
  ValuePtr root;
  bool legacy = false;
  std::string archive_name;  // the zip's top folder ("archive", or the file stem)
  // Storages in the order the file lists them, with where their bytes lie in the file.
  struct StorageRecord {
    std::shared_ptr<Storage> storage;
    uint64_t file_offset = 0;
    std::string entry;   // zip entry name (empty for legacy)
    uint32_t crc32 = 0;  // from the zip's central directory
  };
  std::vector<StorageRecord> storages;

  // Checks the CRC-32 of every storage record against the zip directory (reads all data).
  void verify_crc() const;
};

struct TorchLoadOptions {
  UnpickleOptions unpickle;
};

TorchFile load_torch_file(const std::string& path, const TorchLoadOptions& opts = {});
TorchFile load_torch_file(std::shared_ptr<MappedFile> file, const TorchLoadOptions& opts = {});

struct TorchSaveOptions {
  std::string archive_name = "archive";  // what torch.save uses when given a file object
};

// A value tree's data.pkl, and the storages it names in key order ("0", "1", ...: order of first
// use; a storage shared by several tensors gets one key). The two .pt writers share this.
struct PickledTree {
  std::string pkl;
  std::vector<std::shared_ptr<Storage>> storages;
};
PickledTree pickle_torch_tree(const ValuePtr& root);

// Writes `root` atomically to `path`. Storages referenced by several tensors are written once
// and stay shared; each storage is streamed straight from wherever it lives (e.g. an input map).
void save_torch_file(const std::string& path, const ValuePtr& root, const TorchSaveOptions& opts = {});

// Every tensor in a value tree with its path ("model.decoder.layers.0.fc1.weight" style, dict
// keys joined by '.', list indices as numbers), in tree order.
struct NamedTensor {
  std::string name;
  std::shared_ptr<Tensor> tensor;
};
std::vector<NamedTensor> collect_tensors(const ValuePtr& root);

}  // namespace optforge
