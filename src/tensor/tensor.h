// A tensor is a typed, strided view over a Storage. A Storage is bytes that someone owns: a span
// of an mmapped file (zero-copy reads) or a buffer we allocated. Views share their storage.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace optforge {

struct Storage {
  DType dtype = DType::U8;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::shared_ptr<const void> owner;  // keeps the mapping or buffer alive
  std::string key;                    // the record name in the file it came from ("0", "17")
  std::string location = "cpu";       // torch device string as saved ("cpu", "cuda:3")
  // A lazily converted storage: no bytes of its own; writers produce them by converting
  // `cast_from` (same element count) on the fly, so a dtype change never holds a whole copy.
  std::shared_ptr<Storage> cast_from;
  // A generated storage: no bytes of its own; writers call generate(byte_offset, dst, n) for
  // each piece (deterministic random models of any size in bounded memory).
  std::function<void(uint64_t byte_offset, uint8_t* dst, size_t n)> generate;
  bool is_lazy() const { return cast_from || generate; }
  // CRC-32 the input file recorded for these bytes (zip records), checked when they are copied.
  std::optional<uint32_t> source_crc32;
  std::string source_file;  // the input it was read from, for errors

  uint64_t numel() const { return nbytes / dtype_size(dtype); }
  static std::shared_ptr<Storage> allocate(DType dtype, uint64_t numel);
  // A generated storage of `numel` elements whose bytes `gen` writes on demand (see `generate`).
  static std::shared_ptr<Storage> generated(DType dtype, uint64_t numel,
                                            std::function<void(uint64_t, uint8_t*, size_t)> gen);
  // Writable access to a storage we allocated ourselves.
  uint8_t* mutable_data() { return const_cast<uint8_t*>(data); }
};

using Shape = std::vector<int64_t>;

// Elements of a tensor of this shape (1 for a 0-d shape).
inline uint64_t numel_of(const Shape& s) {
  uint64_t n = 1;
  for (auto d : s) n *= uint64_t(d);
  return n;
}

struct Tensor {
  DType dtype = DType::F32;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // storage offset in elements
  std::shared_ptr<Storage> storage;
  bool requires_grad = false;

  // Largest element count (and stride) a tensor may have: leaves room to multiply by any element
  // size and add offsets without overflowing int64.
  static constexpr int64_t kMaxElements = int64_t(1) << 56;
  // Strides in elements of a dense tensor of `shape`: row-major (the last dim varies fastest) or,
  // with column_major, Fortran order (the first dim does). Every stride is a product of sizes with
  // zero sizes counted as 1, so a shape holding a 0 can still have huge strides: throws
  // optforge::Error (no file named) if a size is negative or that product passes kMaxElements.
  static Shape contiguous_strides(const Shape& shape, bool column_major = false);
  // A new contiguous tensor with its own zeroed storage.
  static Tensor empty(DType dtype, const Shape& shape);
  // A contiguous tensor viewing `storage` at element `offset`.
  static Tensor view_of(std::shared_ptr<Storage> storage, const Shape& shape, int64_t offset = 0);

  int64_t numel() const;
  uint64_t nbytes() const { return uint64_t(numel()) * dtype_size(dtype); }
  int64_t dim() const { return int64_t(shape.size()); }
  bool is_contiguous() const;
  // Checks that every element lies inside the storage; throws optforge::Error if not.
  void check_bounds() const;
  // Pointer to the first element (valid for contiguous tensors as a flat array).
  const uint8_t* data() const { return storage->data + offset * int64_t(dtype_size(dtype)); }
  // Copies the logical (row-major) bytes to dst, whatever the strides. dst holds nbytes().
  void copy_to(uint8_t* dst) const;
  // Calls fn(ptr, len) over the logical bytes in order: one call for a contiguous tensor, else
  // one per contiguous run. Lets writers stream views without materialising them.
  void for_each_chunk(const std::function<void(const uint8_t*, size_t)>& fn) const;
  // A contiguous tensor with the same values (this one if already contiguous).
  Tensor contiguous() const;
  // Element-wise conversion to another dtype (floats round to nearest even, as torch's .to()).
  Tensor to(DType target) const;
  std::string shape_string() const;
};

}  // namespace optforge
