#include "formats/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/byte_io.h"
#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {

using json = nlohmann::ordered_json;

bool looks_like_safetensors(const uint8_t* data, uint64_t size) {
  if (size < 10) return false;
  uint64_t n = load_le<uint64_t>(data);
  return n >= 2 && n <= size - 8 && data[8] == '{';
}

SafetensorsFile load_safetensors(const std::string& path) { return load_safetensors(MappedFile::open(path)); }

SafetensorsFile load_safetensors(std::shared_ptr<MappedFile> file) {
  SafetensorsFile sf;
  const std::string path = file->path();
  sf.path = path;
  sf.file = std::move(file);
  const MappedFile& f = *sf.file;
  auto fail = [&](const std::string& msg, const std::string& where = "") -> void {
    throw Error(msg, path, where);
  };
  if (f.size() < 8) fail("file too small for safetensors (" + std::to_string(f.size()) + " bytes)");
  const uint64_t n = load_le<uint64_t>(f.data());
  if (n > f.size() - 8) fail("header length " + std::to_string(n) + " exceeds the file (" + std::to_string(f.size()) + " bytes; truncated?)");
  json header;
  try {
    header = json::parse(f.data() + 8, f.data() + 8 + n);
  } catch (const json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail("header is not a JSON object");
  const uint64_t data_start = 8 + n, data_size = f.size() - data_start;

  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& info = it.value();
    if (name == "__metadata__") {
      if (!info.is_object()) fail("__metadata__ is not an object");
      for (auto m = info.begin(); m != info.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value '" + m.key() + "' is not a string");
        sf.metadata.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      fail("entry needs dtype, shape and data_offsets", "tensor '" + name + "'");
    const json &jd = info["dtype"], &js = info["shape"], &jo = info["data_offsets"];
    if (!jd.is_string()) fail("dtype is not a string", "tensor '" + name + "'");
    auto dtype = dtype_from_safetensors(jd.get<std::string>());
    if (!dtype) fail("unsupported dtype '" + jd.get<std::string>() + "'", "tensor '" + name + "'");
    if (!js.is_array()) fail("shape is not a list", "tensor '" + name + "'");
    Shape shape;
    uint64_t numel = 1;
    for (const auto& d : js) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        fail("shape holds a non-integer, negative or huge size", "tensor '" + name + "'");
      shape.push_back(int64_t(d.get<uint64_t>()));
      if (__builtin_mul_overflow(numel, d.get<uint64_t>(), &numel))
        fail("shape's element count overflows", "tensor '" + name + "'");
    }
    uint64_t need = 0;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(*dtype)), &need))
      fail("shape's byte count overflows", "tensor '" + name + "'");
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      fail("data_offsets must be [begin, end]", "tensor '" + name + "'");
    uint64_t b = jo[0].get<uint64_t>(), e = jo[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] outside the " +
           std::to_string(data_size) + " data bytes", "tensor '" + name + "'");
    if (need != e - b)
      fail("shape and dtype need " + std::to_string(need) + " bytes but data_offsets span " +
           std::to_string(e - b), "tensor '" + name + "'");
    auto s = std::make_shared<Storage>();
    s->dtype = *dtype;
    s->data = f.data() + data_start + b;
    s->nbytes = e - b;
    s->owner = sf.file;
    s->key = name;
    sf.tensors.emplace_back(name, Tensor::view_of(s, shape));
    ranges.push_back({b, e, name});
  }
  // Like safetensors itself: tensors tile the data region exactly, no gaps, no overlaps.
  std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) { return x.begin < y.begin; });
  uint64_t expect = 0;
  for (const auto& r : ranges) {
    if (r.begin != expect)
      fail("data of tensor '" + r.name + "' starts at " + std::to_string(r.begin) + ", expected " + std::to_string(expect) +
           " (gap or overlap)");
    expect = r.end;
  }
  if (expect != data_size)
    fail("tensors cover " + std::to_string(expect) + " of " + std::to_string(data_size) + " data bytes");
  return sf;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype) > dtype_size(tensors[b].second.dtype);
  });
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    if (name == "__metadata__") throw Error("a tensor cannot be named __metadata__", path);
    if (header.contains(name)) throw Error("tensor name appears twice", path, "tensor '" + name + "'");
    auto st = safetensors_dtype(t.dtype);
    if (st.empty()) throw Error("safetensors has no dtype for " + std::string(dtype_name(t.dtype)), path, "tensor '" + name + "'");
    header[name] = {{"dtype", std::string(st)}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string len;
  append_le<uint64_t>(len, h.size());
  AtomicFile out(path);
  out.write(len);
  out.write(h);
  for (size_t i : order)
    stream_tensor(tensors[i].second, [&](const uint8_t* p, size_t n) { out.write(p, n); });
  out.commit();
}

}  // namespace optforge
