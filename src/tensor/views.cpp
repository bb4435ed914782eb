#include "tensor/views.h"

#include <algorithm>
#include <cstring>

#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {

Tensor slice(const Tensor& t, int dim, int64_t start, int64_t len) {
  if (dim < 0 || dim >= t.dim())
    throw Error("slice: dim " + std::to_string(dim) + " of a " + std::to_string(t.dim()) + "-d tensor");
  if (start < 0 || len < 0 || start + len > t.shape[size_t(dim)])
    throw Error("slice [" + std::to_string(start) + ", " + std::to_string(start + len) + ") of dim " +
                std::to_string(dim) + " outside shape " + t.shape_string());
  Tensor r = t;
  r.shape[size_t(dim)] = len;
  r.offset += start * t.strides[size_t(dim)];
  return r;
}

Tensor transpose2d(const Tensor& t) {
  if (t.dim() != 2) throw Error("transpose of a " + std::to_string(t.dim()) + "-d tensor, expected 2-d");
  Tensor r = t;
  std::swap(r.shape[0], r.shape[1]);
  std::swap(r.strides[0], r.strides[1]);
  return r;
}

std::vector<Tensor> chunk(const Tensor& t, int dim, int64_t parts) {
  const int64_t n = t.shape.at(size_t(dim));
  if (parts <= 0 || n % parts)
    throw Error("cannot split dim " + std::to_string(dim) + " of shape " + t.shape_string() + " into " +
                std::to_string(parts) + " equal parts");
  std::vector<Tensor> out;
  for (int64_t i = 0; i < parts; ++i) out.push_back(slice(t, dim, i * (n / parts), n / parts));
  return out;
}

namespace {

// Produces bytes [off, off + n) of the logical stream of `src` (sequential calls are cheap: the
// walk skips whole runs before the range).
void logical_range(const Tensor& src, uint64_t off, uint8_t* dst, size_t n) {
  uint64_t pos = 0;
  const uint64_t end = off + n;
  bool done = false;
  auto take = [&](const uint8_t* p, size_t len) {
    if (done) return;
    uint64_t a = std::max(pos, off), b = std::min(pos + len, end);
    if (a < b) std::memcpy(dst + (a - off), p + (a - pos), size_t(b - a));
    pos += len;
    if (pos >= end) done = true;
  };
  if (src.storage->is_lazy()) {
    stream_tensor(src, take);  // a view of something itself lazy: produce and keep the range
  } else {
    src.for_each_chunk(take);
  }
}

}  // namespace

Tensor compact(const Tensor& t) {
  if (t.offset == 0 && t.is_contiguous() && t.nbytes() == t.storage->nbytes && !t.storage->cast_from) return t;
  auto s = std::make_shared<Storage>();
  s->dtype = t.dtype;
  s->nbytes = t.nbytes();
  s->location = t.storage->location;
  Tensor src = t;
  s->generate = [src](uint64_t off, uint8_t* dst, size_t n) { logical_range(src, off, dst, n); };
  return Tensor::view_of(s, t.shape);
}

}  // namespace optforge
