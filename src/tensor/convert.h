// Bulk element conversion between dtypes, as torch's `Tensor.to(dtype)` does it: floats round to
// nearest even; float -> integer truncates toward zero; anything -> bool is `x != 0`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "tensor/tensor.h"

#include "tensor/dtype.h"

namespace optforge {

void convert_elements(DType from, const uint8_t* src, DType to, uint8_t* dst, uint64_t n);

// Byte sinks for writers: called with consecutive pieces of the output.
using ByteSink = std::function<void(const uint8_t*, size_t)>;

// The bytes of a whole storage, converting on the fly if it is a lazy cast.
void stream_storage(const Storage& s, const ByteSink& sink);
// The logical (row-major) bytes of a tensor, views and lazy casts included.
void stream_tensor(const Tensor& t, const ByteSink& sink);

// The same tensor as `target` without converting now: a view of a lazily cast storage. Tensors
// sharing a storage share the cast storage through `cache` (keyed by the source storage).
Tensor lazy_cast(const Tensor& t, DType target, std::unordered_map<const Storage*, std::shared_ptr<Storage>>& cache);

}  // namespace optforge
