#include "formats/npy.h"

#include <algorithm>
#include <cctype>

#include "io/atomic_file.h"
#include "io/byte_io.h"
#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {
namespace {

const char* descr_of(DType t) {
  switch (t) {
    case DType::F64: return "<f8";
    case DType::F32: return "<f4";
    case DType::F16: return "<f2";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    case DType::I16: return "<i2";
    case DType::I8: return "|i1";
    case DType::U8: return "|u1";
    case DType::Bool: return "|b1";
    case DType::C64: return "<c8";
    case DType::C128: return "<c16";
    case DType::BF16: return nullptr;
  }
  return nullptr;
}

DType dtype_of_descr(const std::string& d, const std::string& path) {
  for (DType t : {DType::F64, DType::F32, DType::F16, DType::I64, DType::I32, DType::I16, DType::I8, DType::U8,
                  DType::Bool, DType::C64, DType::C128}) {
    std::string want = descr_of(t);
    // '<' and '|' are the little-endian / not-applicable spellings numpy writes; '=' is native.
    if (d == want ||
        (d.size() == want.size() && (d[0] == '=' || d[0] == '|' || d[0] == '<') && d.substr(1) == want.substr(1)))
      return t;
  }
  throw Error("unsupported numpy dtype '" + d + "' (big-endian or not a plain number type)", path);
}

// Finds `'key':` in the header dict and returns the text of its value (up to the next top-level ',').
std::string field(const std::string& h, const std::string& key, const std::string& path) {
  auto k = h.find("'" + key + "'");
  if (k == std::string::npos) throw Error("npy header has no '" + key + "'", path);
  auto colon = h.find(':', k);
  if (colon == std::string::npos) throw Error("npy header is malformed near '" + key + "'", path);
  size_t i = colon + 1, depth = 0;
  while (i < h.size() && std::isspace(static_cast<unsigned char>(h[i]))) ++i;
  size_t start = i;
  for (; i < h.size(); ++i) {
    char c = h[i];
    if (c == '(' || c == '[')
      ++depth;
    else if (c == ')' || c == ']') {
      if (depth == 0) break;
      --depth;
    } else if ((c == ',' || c == '}') && depth == 0)
      break;
  }
  return h.substr(start, i - start + (i < h.size() && h[i] == ')' ? 1 : 0));
}

}  // namespace

Tensor load_npy(const std::string& path) {
  auto f = MappedFile::open(path);
  return load_npy(f, 0, f->size());
}

Tensor load_npy(const std::shared_ptr<MappedFile>& f, uint64_t off, uint64_t size) {
  const std::string& path = f->path();
  const uint8_t* p = f->data() + off;
  if (size < 10 || std::string(reinterpret_cast<const char*>(p), 6) != "\x93NUMPY")
    throw Error("not a .npy file (no \\x93NUMPY magic)", path);
  uint8_t major = p[6];
  uint64_t hlen, hstart;
  if (major == 1) {
    hlen = load_le<uint16_t>(p + 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw Error("truncated .npy header", path);
    hlen = load_le<uint32_t>(p + 8);
    hstart = 12;
  } else {
    throw Error("unsupported .npy version " + std::to_string(major), path);
  }
  if (hstart + hlen > size) throw Error("truncated .npy header", path);
  std::string h(reinterpret_cast<const char*>(p + hstart), size_t(hlen));
  std::string descr = field(h, "descr", path), fortran = field(h, "fortran_order", path),
              shape_s = field(h, "shape", path);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"'))
    throw Error("npy descr is not a string: " + descr, path);
  DType dtype = dtype_of_descr(descr.substr(1, descr.size() - 2), path);
  Shape shape;
  if (shape_s.empty() || shape_s.front() != '(') throw Error("npy shape is not a tuple: " + shape_s, path);
  for (size_t i = 1; i < shape_s.size();) {
    while (i < shape_s.size() && !std::isdigit(static_cast<unsigned char>(shape_s[i]))) {
      if (shape_s[i] == '-') throw Error("negative size in npy shape " + shape_s, path);
      ++i;
    }
    if (i >= shape_s.size()) break;
    size_t j = i;
    while (j < shape_s.size() && std::isdigit(static_cast<unsigned char>(shape_s[j]))) ++j;
    if (j - i > 15) throw Error("size too large in npy shape " + shape_s, path);
    shape.push_back(std::stoll(shape_s.substr(i, j - i)));
    i = j;
  }
  uint64_t data_off = hstart + hlen;
  auto s = std::make_shared<Storage>();
  s->dtype = dtype;
  s->data = p + data_off;
  s->nbytes = size - data_off;
  s->owner = f;
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.storage = s;
  try {
    t.strides = Tensor::contiguous_strides(shape, fortran.rfind("True", 0) == 0);
    t.check_bounds();
  } catch (const Error& e) { throw e.with_file(path); }
  if (t.nbytes() != s->nbytes)
    throw Error("npy data holds " + std::to_string(s->nbytes) + " bytes, shape " + t.shape_string() + " of " +
                    std::string(dtype_name(dtype)) + " needs " + std::to_string(t.nbytes()),
                path);
  return t;
}

std::string npy_header(DType dtype, const Shape& shape) {
  const char* d = descr_of(dtype);
  if (!d) throw Error("numpy has no " + std::string(dtype_name(dtype)) + " dtype; convert with --dtype f16 or f32");
  std::string sh = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    sh += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
  sh += ")";
  std::string dict = std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': " + sh + ", }";
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  append_le<uint16_t>(out, uint16_t(dict.size()));
  return out + dict;
}

void save_npy(const std::string& path, const Tensor& t) {
  AtomicFile out(path);
  out.write(npy_header(t.dtype, t.shape));
  stream_tensor(t, [&](const uint8_t* p, size_t n) { out.write(p, n); });
  out.commit();
}

void save_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& arrays) {
  AtomicFile out(path);
  ZipWriter zip(out);
  for (const auto& [name, t] : arrays) {
    std::string h = npy_header(t.dtype, t.shape);
    zip.begin_entry(name + ".npy", h.size() + t.nbytes());
    zip.write(h.data(), h.size());
    stream_tensor(t, [&](const uint8_t* p, size_t n) { zip.write(p, n); });
    zip.end_entry();
  }
  zip.finish();
  out.commit();
}

}  // namespace optforge
