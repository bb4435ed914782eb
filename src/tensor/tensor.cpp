#include "tensor/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {

std::shared_ptr<Storage> Storage::generated(DType dtype, uint64_t numel,
                                            std::function<void(uint64_t, uint8_t*, size_t)> gen) {
  auto s = std::make_shared<Storage>();
  s->dtype = dtype;
  s->nbytes = numel * dtype_size(dtype);
  s->generate = std::move(gen);
  return s;
}

std::shared_ptr<Storage> Storage::allocate(DType dtype, uint64_t numel) {
  auto s = std::make_shared<Storage>();
  s->dtype = dtype;
  s->nbytes = numel * dtype_size(dtype);
  // 64-byte aligned so kernels and writers can use the buffer directly.
  size_t bytes = (s->nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes ? bytes : 64);
  if (!p) throw Error("out of memory allocating " + std::to_string(s->nbytes) + " bytes");
  std::memset(p, 0, bytes ? bytes : 64);
  s->owner = std::shared_ptr<void>(p, std::free);
  s->data = static_cast<const uint8_t*>(p);
  return s;
}

namespace {

std::string to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

Shape Tensor::contiguous_strides(const Shape& shape, bool column_major) {
  const size_t n = shape.size();
  Shape st(n);
  int64_t acc = 1;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = column_major ? k : n - 1 - k;
    st[i] = acc;
    if (shape[i] < 0) throw Error("negative size in tensor shape " + to_string(shape));
    if (__builtin_mul_overflow(acc, std::max<int64_t>(shape[i], 1), &acc) || acc > kMaxElements)
      throw Error("tensor shape " + to_string(shape) + " is too large (its strides pass 2^56 elements)");
  }
  return st;
}

Tensor Tensor::empty(DType dtype, const Shape& shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = contiguous_strides(shape);
  t.storage = Storage::allocate(dtype, uint64_t(t.numel()));
  return t;
}

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, const Shape& shape, int64_t offset) {
  Tensor t;
  t.dtype = storage->dtype;
  t.shape = shape;
  t.strides = contiguous_strides(shape);
  t.offset = offset;
  t.storage = std::move(storage);
  t.check_bounds();
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

void Tensor::check_bounds() const {
  if (strides.size() != shape.size())
    throw Error("tensor has " + std::to_string(shape.size()) + " dims but " + std::to_string(strides.size()) +
                " strides");
  if (!storage) throw Error("tensor has no storage");
  if (offset < 0) throw Error("negative storage offset " + std::to_string(offset));
  uint64_t storage_numel = storage->numel();
  // Zero sizes count as 1 here, as in contiguous_strides: numel() and is_contiguous() multiply
  // the sizes in any order, so even an empty tensor's other sizes must keep their product small.
  int64_t span = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(span, std::max<int64_t>(d, 1), &span) || span > kMaxElements)
      throw Error("tensor shape " + shape_string() + " is negative or too large");
    empty = empty || d == 0;
  }
  if (empty) {
    if (uint64_t(offset) > storage_numel)
      throw Error("storage offset " + std::to_string(offset) + " past the end of a storage of " +
                  std::to_string(storage_numel) + " elements");
    return;
  }
  // Largest element index reached: offset + sum((size-1) * stride); sizes and strides >= 0.
  int64_t last = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0 || strides[i] < 0) throw Error("negative size or stride in shape " + shape_string());
    int64_t step = 0;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &step) || __builtin_add_overflow(last, step, &last))
      throw Error("tensor of shape " + shape_string() + " overflows its index range");
  }
  if (uint64_t(last) >= storage_numel)
    throw Error("tensor of shape " + shape_string() + " at offset " + std::to_string(offset) + " reaches element " +
                std::to_string(int64_t(last)) + " but its storage holds " + std::to_string(storage_numel) +
                " elements");
}

void Tensor::for_each_chunk(const std::function<void(const uint8_t*, size_t)>& fn) const {
  const size_t es = dtype_size(dtype);
  if (numel() == 0) return;
  if (is_contiguous()) {
    fn(data(), nbytes());
    return;
  }
  // Collapse the trailing dims that are contiguous into one run, then walk the rest.
  int64_t run = 1;
  size_t inner = shape.size();
  while (inner > 0 && (shape[inner - 1] == 1 || strides[inner - 1] == run)) {
    run *= shape[inner - 1];
    --inner;
  }
  std::vector<int64_t> idx(inner, 0);
  const uint8_t* base = storage->data;
  while (true) {
    int64_t off = offset;
    for (size_t i = 0; i < inner; ++i) off += idx[i] * strides[i];
    fn(base + off * int64_t(es), size_t(run) * es);
    size_t d = inner;
    while (d > 0) {
      if (++idx[d - 1] < shape[d - 1]) break;
      idx[d - 1] = 0;
      --d;
    }
    if (d == 0) return;
  }
}

void Tensor::copy_to(uint8_t* dst) const {
  stream_tensor(*this, [&](const uint8_t* p, size_t n) {
    std::memcpy(dst, p, n);
    dst += n;
  });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous() && !storage->is_lazy()) return *this;
  Tensor t = empty(dtype, shape);
  copy_to(t.storage->mutable_data());
  return t;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype) return *this;
  Tensor src = contiguous();
  Tensor t = empty(target, shape);
  convert_elements(dtype, src.data(), target, t.storage->mutable_data(), uint64_t(numel()));
  return t;
}

std::string Tensor::shape_string() const { return to_string(shape); }

}  // namespace optforge
