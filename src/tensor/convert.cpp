#include "tensor/convert.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "util/error.h"

namespace optforge {
namespace {

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Reads element i as double (exact for every real dtype but i64 beyond 2^53, handled apart).
double read_real(DType t, const uint8_t* p) {
  switch (t) {
    case DType::F64: return load<double>(p);
    case DType::F32: return load<float>(p);
    case DType::F16: return f16_to_f32(load<uint16_t>(p));
    case DType::BF16: return bf16_to_f32(load<uint16_t>(p));
    case DType::I64: return double(load<int64_t>(p));
    case DType::I32: return load<int32_t>(p);
    case DType::I16: return load<int16_t>(p);
    case DType::I8: return load<int8_t>(p);
    case DType::U8: return load<uint8_t>(p);
    case DType::Bool: return load<uint8_t>(p) ? 1.0 : 0.0;
    default: throw Error("conversion from complex dtypes is not supported");
  }
}

void write_real(DType t, uint8_t* p, double v) {
  switch (t) {
    case DType::F64: store<double>(p, v); break;
    // double -> float -> half would round twice; every source of a float narrowing here is
    // at most f32 (f64 sources go through float first exactly as torch does for half: it
    // converts double -> float -> half too), so this matches torch.
    case DType::F32: store<float>(p, float(v)); break;
    case DType::F16: store<uint16_t>(p, f32_to_f16(float(v))); break;
    case DType::BF16: store<uint16_t>(p, f32_to_bf16(float(v))); break;
    case DType::I64: store<int64_t>(p, int64_t(v)); break;
    case DType::I32: store<int32_t>(p, int32_t(v)); break;
    case DType::I16: store<int16_t>(p, int16_t(v)); break;
    case DType::I8: store<int8_t>(p, int8_t(v)); break;
    case DType::U8: store<uint8_t>(p, uint8_t(int64_t(v))); break;
    case DType::Bool: store<uint8_t>(p, v != 0.0); break;
    default: throw Error("conversion to complex dtypes is not supported");
  }
}

}  // namespace

void convert_elements(DType from, const uint8_t* src, DType to, uint8_t* dst, uint64_t n) {
  const size_t si = dtype_size(from), di = dtype_size(to);
  if (from == to) {
    std::memcpy(dst, src, n * si);
    return;
  }
  // The hot paths of checkpoint conversion, in tight loops the compiler vectorises.
  if (from == DType::F32 && to == DType::F16) {
    for (uint64_t i = 0; i < n; ++i) store<uint16_t>(dst + 2 * i, f32_to_f16(load<float>(src + 4 * i)));
  } else if (from == DType::F32 && to == DType::BF16) {
    for (uint64_t i = 0; i < n; ++i) store<uint16_t>(dst + 2 * i, f32_to_bf16(load<float>(src + 4 * i)));
  } else if (from == DType::F16 && to == DType::F32) {
    for (uint64_t i = 0; i < n; ++i) store<float>(dst + 4 * i, f16_to_f32(load<uint16_t>(src + 2 * i)));
  } else if (from == DType::BF16 && to == DType::F32) {
    for (uint64_t i = 0; i < n; ++i) store<float>(dst + 4 * i, bf16_to_f32(load<uint16_t>(src + 2 * i)));
  } else if (from == DType::I64 && to == DType::I64) {
    std::memcpy(dst, src, n * 8);
  } else {
    for (uint64_t i = 0; i < n; ++i) write_real(to, dst + i * di, read_real(from, src + i * si));
  }
}

}  // namespace optforge

namespace optforge {

namespace {
constexpr uint64_t kBlockElems = 1 << 18;

void stream_converted(DType from, const uint8_t* src, DType to, uint64_t n, const ByteSink& sink) {
  std::vector<uint8_t> buf(size_t(std::min(n, kBlockElems)) * dtype_size(to));
  for (uint64_t i = 0; i < n; i += kBlockElems) {
    uint64_t k = std::min(kBlockElems, n - i);
    convert_elements(from, src + i * dtype_size(from), to, buf.data(), k);
    sink(buf.data(), size_t(k * dtype_size(to)));
  }
}
}  // namespace

namespace {
// Generated storages are produced in blocks; a tensor must cover a contiguous byte range.
void stream_generated(const Storage& s, uint64_t begin, uint64_t n, const ByteSink& sink) {
  constexpr uint64_t kBlock = 1 << 20;
  std::vector<uint8_t> buf(size_t(std::min(n, kBlock)));
  for (uint64_t i = 0; i < n; i += kBlock) {
    uint64_t k = std::min(kBlock, n - i);
    s.generate(begin + i, buf.data(), size_t(k));
    sink(buf.data(), size_t(k));
  }
}
}  // namespace

void stream_storage(const Storage& s, const ByteSink& sink) {
  if (s.generate) return stream_generated(s, 0, s.nbytes, sink);
  if (!s.cast_from) {
    if (s.nbytes) sink(s.data, size_t(s.nbytes));
    return;
  }
  if (s.cast_from->generate) {  // cast of a generated storage: generate, then convert
    stream_generated(*s.cast_from, 0, s.cast_from->nbytes, [&](const uint8_t* p, size_t n) {
      stream_converted(s.cast_from->dtype, p, s.dtype, n / dtype_size(s.cast_from->dtype), sink);
    });
    return;
  }
  stream_converted(s.cast_from->dtype, s.cast_from->data, s.dtype, s.numel(), sink);
}

void stream_tensor(const Tensor& t, const ByteSink& sink) {
  if (t.storage->generate) {
    if (!t.is_contiguous()) throw Error("internal: strided view of a generated storage");
    return stream_generated(*t.storage, uint64_t(t.offset) * dtype_size(t.dtype), t.nbytes(), sink);
  }
  if (!t.storage->cast_from) {
    t.for_each_chunk(sink);
    return;
  }
  if (t.storage->cast_from->generate) {
    const Storage& g = *t.storage->cast_from;
    if (!t.is_contiguous()) throw Error("internal: strided view of a generated storage");
    stream_generated(
        g, uint64_t(t.offset) * dtype_size(g.dtype), uint64_t(t.numel()) * dtype_size(g.dtype),
        [&](const uint8_t* p, size_t n) { stream_converted(g.dtype, p, t.dtype, n / dtype_size(g.dtype), sink); });
    return;
  }
  Tensor src = t;
  src.storage = t.storage->cast_from;
  src.dtype = src.storage->dtype;
  src.for_each_chunk(
      [&](const uint8_t* p, size_t n) { stream_converted(src.dtype, p, t.dtype, n / dtype_size(src.dtype), sink); });
}

Tensor lazy_cast(const Tensor& t, DType target, std::unordered_map<const Storage*, std::shared_ptr<Storage>>& cache) {
  if (t.dtype == target) return t;
  auto& cast = cache[t.storage.get()];
  if (!cast) {
    cast = std::make_shared<Storage>();
    cast->dtype = target;
    cast->nbytes = t.storage->numel() * dtype_size(target);
    cast->key = t.storage->key;
    cast->location = t.storage->location;
    cast->cast_from = t.storage->cast_from ? t.storage->cast_from : t.storage;
  }
  Tensor r = t;
  r.dtype = target;
  r.storage = cast;
  return r;
}

}  // namespace optforge
