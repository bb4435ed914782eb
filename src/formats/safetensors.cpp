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

namespace {

// One tensor's entry of the header, checked against the data region's size.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // data_offsets, relative to the data region
};

Entry parse_entry(const std::string& name, const json& info, uint64_t data_size, const std::string& path) {
  const std::string where = "tensor '" + name + "'";
  auto fail = [&](const std::string& msg) { throw Error(msg, path, where); };
  if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
    fail("entry needs dtype, shape and data_offsets");
  const json &jd = info["dtype"], &js = info["shape"], &jo = info["data_offsets"];
  if (!jd.is_string()) fail("dtype is not a string");
  auto dtype = dtype_from_safetensors(jd.get<std::string>());
  if (!dtype) fail("unsupported dtype '" + jd.get<std::string>() + "'");
  if (!js.is_array()) fail("shape is not a list");
  Entry t{name, *dtype, {}, 0, 0};
  uint64_t numel = 1;
  for (const auto& d : js) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
      fail("shape holds a non-integer, negative or huge size");
    t.shape.push_back(int64_t(d.get<uint64_t>()));
    if (__builtin_mul_overflow(numel, d.get<uint64_t>(), &numel)) fail("shape's element count overflows");
  }
  uint64_t need = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(*dtype)), &need)) fail("shape's byte count overflows");
  if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
    fail("data_offsets must be [begin, end]");
  t.begin = jo[0].get<uint64_t>(), t.end = jo[1].get<uint64_t>();
  if (t.begin > t.end || t.end > data_size)
    fail("data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] outside the " +
         std::to_string(data_size) + " data bytes");
  if (need != t.end - t.begin)
    fail("shape and dtype need " + std::to_string(need) + " bytes but data_offsets span " +
         std::to_string(t.end - t.begin));
  return t;
}

// Like safetensors itself: tensors tile the data region exactly, no gaps, no overlaps.
void check_tiling(std::vector<Entry> entries, uint64_t data_size, const std::string& path) {
  std::sort(entries.begin(), entries.end(), [](const Entry& x, const Entry& y) { return x.begin < y.begin; });
  uint64_t expect = 0;
  for (const auto& r : entries) {
    if (r.begin != expect)
      throw Error("data of tensor '" + r.name + "' starts at " + std::to_string(r.begin) + ", expected " +
                      std::to_string(expect) + " (gap or overlap)",
                  path);
    expect = r.end;
  }
  if (expect != data_size)
    throw Error("tensors cover " + std::to_string(expect) + " of " + std::to_string(data_size) + " data bytes", path);
}

json parse_header(const MappedFile& f) {
  if (f.size() < 8) throw Error("file too small for safetensors (" + std::to_string(f.size()) + " bytes)", f.path());
  const uint64_t n = load_le<uint64_t>(f.data());
  if (n > f.size() - 8)
    throw Error(
        "header length " + std::to_string(n) + " exceeds the file (" + std::to_string(f.size()) + " bytes; truncated?)",
        f.path());
  json header;
  try {
    header = json::parse(f.data() + 8, f.data() + 8 + n);
  } catch (const json::exception& e) { throw Error(std::string("header is not valid JSON: ") + e.what(), f.path()); }
  if (!header.is_object()) throw Error("header is not a JSON object", f.path());
  return header;
}

}  // namespace

SafetensorsFile load_safetensors(std::shared_ptr<MappedFile> file) {
  SafetensorsFile sf;
  sf.path = file->path();
  sf.file = std::move(file);
  const MappedFile& f = *sf.file;
  const json header = parse_header(f);
  const uint64_t data_start = 8 + load_le<uint64_t>(f.data()), data_size = f.size() - data_start;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw Error("__metadata__ is not an object", sf.path);
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) throw Error("__metadata__ value '" + m.key() + "' is not a string", sf.path);
        sf.metadata.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    const Entry& t = entries.emplace_back(parse_entry(it.key(), it.value(), data_size, sf.path));
    auto s = std::make_shared<Storage>();
    s->dtype = t.dtype;
    s->data = f.data() + data_start + t.begin;
    s->nbytes = t.end - t.begin;
    s->owner = sf.file;
    s->key = t.name;
    try {
      sf.tensors.emplace_back(t.name, Tensor::view_of(s, t.shape));
    } catch (const Error& e) { throw Error(e.message(), sf.path, "tensor '" + t.name + "'"); }
  }
  check_tiling(std::move(entries), data_size, sf.path);
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
    if (st.empty())
      throw Error("safetensors has no dtype for " + std::string(dtype_name(t.dtype)), path, "tensor '" + name + "'");
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
  for (size_t i : order) stream_tensor(tensors[i].second, [&](const uint8_t* p, size_t n) { out.write(p, n); });
  out.commit();
}

}  // namespace optforge
