// Writes a group of .pt files (torch.save's zip container, as save_torch_file writes it) whose
// tensors are produced on the fly, in parallel, and commits the group only when every file is
// complete.
//
// The whole layout is planned before any data is read: each file's pickle (data.pkl) needs only
// the storage keys and sizes, so the offset of every record is known up front. The data is then
// cut into units (a byte range of one storage record, at most `unit_bytes`), which threads execute
// in any order: produce the bytes (straight from the mmapped inputs when they are contiguous there),
// CRC them, pwrite them at their place in the output. When a file's last unit is done its headers
// (with the CRCs, combined across units) and central directory are written and it is fsynced under
// a temporary name; only when all files are done are they renamed into place. On any error nothing
// appears under a final name.
//
// Peak memory: the pickles, one I/O buffer per thread, and the input pages of the units in flight
// (released after each unit), i.e. about threads x unit_bytes; never the size of the model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "checkpoint/producer.h"
#include "pickle/value.h"

namespace optforge::ckpt {

// Storages created for produced tensors, with the producer that makes their bytes.
using ProducerMap = std::unordered_map<const Storage*, ProducerPtr>;

// A contiguous tensor of `shape` whose bytes come from `p` (registered in `map`).
Tensor produced_tensor(ProducerPtr p, DType dtype, const Shape& shape, ProducerMap& map);

struct OutputSpec {
  std::string path;
  ValuePtr root;
  std::string archive = "archive";  // the zip's top folder (torch.save to a file object)
};

class GroupWriter {
 public:
  GroupWriter(std::vector<OutputSpec> files, const ProducerMap& producers, uint64_t unit_bytes = uint64_t(64) << 20);
  ~GroupWriter();

  struct FileInfo {
    std::string path;
    uint64_t size = 0;        // bytes of the whole output file
    uint64_t data_bytes = 0;  // bytes of its storage records
    size_t tensors = 0;       // storage records
  };
  std::vector<FileInfo> files() const;
  uint64_t total_data_bytes() const;
  size_t unit_count() const;

  // Writes everything with `threads` threads; `progress(bytes)` is called as data is written.
  // Commits all files at the end; on error, throws and leaves no output under a final name.
  void run(int threads, const std::function<void(uint64_t)>& progress = {});

 private:
  struct Plan;
  std::unique_ptr<Plan> plan_;
};

}  // namespace optforge::ckpt
