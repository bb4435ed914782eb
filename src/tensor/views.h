// Tensor surgery without copies: slices and transposes are views; concatenation and making a view
// compact produce lazily generated storages whose bytes are computed while a writer streams them.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace optforge {

// Elements [start, start + len) along `dim`: a view of the same storage.
Tensor slice(const Tensor& t, int dim, int64_t start, int64_t len);
// A 2-D tensor's transpose: a view with swapped strides.
Tensor transpose2d(const Tensor& t);
// Split into `parts` equal pieces along `dim` (throws unless divisible); views.
std::vector<Tensor> chunk(const Tensor& t, int dim, int64_t parts);
// The tensor as its own contiguous storage: itself if it already is exactly that, else a lazily
// generated storage holding its logical bytes (what torch's .clone() before save achieves).
Tensor compact(const Tensor& t);

}  // namespace optforge
