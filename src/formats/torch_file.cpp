#include "formats/torch_file.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

#include "io/atomic_file.h"
#include "io/byte_io.h"
#include "io/crc32.h"
#include "io/zip_reader.h"
#include "io/zip_writer.h"
#include "pickle/pickler.h"
#include "pickle/torch_globals.h"
#include "tensor/convert.h"
#include "util/error.h"

namespace optforge {
namespace {

using Kind = Value::Kind;

// The legacy format starts with a pickle of the magic number 0x1950a86a20f9469cfc6c: an 80-bit
// integer, which our 64-bit unpickler does not hold, so it is matched as raw bytes.
constexpr uint8_t kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
constexpr size_t kLegacyMagicLen = sizeof kLegacyMagic;

struct PidInfo {
  DType dtype;
  std::string key, location;
  uint64_t numel;
  ValuePtr view_metadata;
};

PidInfo parse_pid(const ValuePtr& pid) {
  if (pid->kind != Kind::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Kind::Str ||
      pid->items[0]->s != "storage")
    throw Error("persistent id is not a ('storage', class, key, location, numel) tuple");
  const auto& it = pid->items;
  if (it[1]->kind != Kind::Global) throw Error("persistent id: storage class is a " + it[1]->type_name());
  std::string cls = it[1]->s;
  auto dot = cls.rfind('.');
  auto dtype = dtype_from_torch_storage(dot == std::string::npos ? cls : cls.substr(dot + 1));
  if (!dtype) throw Error("unsupported storage class '" + cls + "'");
  if (it[2]->kind != Kind::Str) throw Error("persistent id: storage key is a " + it[2]->type_name());
  if (it[4]->kind != Kind::Int || it[4]->i < 0) throw Error("persistent id: bad element count");
  PidInfo p{*dtype, it[2]->s, it[3]->kind == Kind::Str ? it[3]->s : "cpu", uint64_t(it[4]->i),
            it.size() > 5 ? it[5] : nullptr};
  if (p.numel > (uint64_t(1) << 60)) throw Error("persistent id: element count too large");
  return p;
}

void load_zip(TorchFile& tf, const TorchLoadOptions& opts) {
  const MappedFile& f = *tf.file;
  ZipReader zip(f.data(), f.size(), tf.path);
  if (zip.entries().empty()) throw Error("zip archive has no entries", tf.path);
  const std::string& first = zip.entries().front().name;
  auto slash = first.find('/');
  if (slash == std::string::npos)
    throw Error("zip entry '" + first + "' is not inside a folder; not a torch file", tf.path);
  tf.archive_name = first.substr(0, slash);
  const std::string pkl_name = tf.archive_name + "/data.pkl";
  const ZipEntry* pkl = zip.find(pkl_name);
  if (!pkl) throw Error("no '" + pkl_name + "' record: not a torch.save file", tf.path);
  zip.verify_crc(*pkl);

  std::unordered_map<std::string, std::shared_ptr<Storage>> by_key;
  auto owner = tf.file;
  PersistentLoad load_storage = [&](const ValuePtr& pid) -> ValuePtr {
    PidInfo p = parse_pid(pid);
    auto it = by_key.find(p.key);
    if (it != by_key.end()) {
      if (it->second->dtype != p.dtype) throw Error("storage '" + p.key + "' is referenced with two dtypes");
      return torch_globals::storage_value(it->second);
    }
    const std::string name = tf.archive_name + "/data/" + p.key;
    const ZipEntry* e = zip.find(name);
    if (!e) throw Error("storage record '" + name + "' is missing");
    const uint64_t expected = p.numel * dtype_size(p.dtype);
    if (e->size != expected)
      throw Error("storage record '" + name + "' holds " + std::to_string(e->size) + " bytes, expected " +
                  std::to_string(expected) + " (" + std::to_string(p.numel) + " x " + std::string(dtype_name(p.dtype)) +
                  ")");
    auto s = std::make_shared<Storage>();
    s->dtype = p.dtype;
    s->data = f.data() + e->data_offset;
    s->nbytes = expected;
    s->owner = owner;
    s->key = p.key;
    s->location = p.location;
    s->source_crc32 = e->crc32;
    s->source_file = tf.path;
    by_key.emplace(p.key, s);
    tf.storages.push_back({s, e->data_offset, e->name, e->crc32});
    return torch_globals::storage_value(s);
  };
  tf.root = unpickle(zip.bytes(*pkl), tf.path, pkl_name, load_storage, opts.unpickle);
}

void load_legacy(TorchFile& tf, const TorchLoadOptions& opts) {
  const MappedFile& f = *tf.file;
  std::string_view all = f.view();
  size_t pos = kLegacyMagicLen;  // the magic number pickle, checked by is_legacy_magic()
  auto next_pickle = [&](const char* what, const PersistentLoad& pl) {
    size_t used = 0;
    ValuePtr v = unpickle(all.substr(pos), tf.path, what, pl, opts.unpickle, &used);
    pos += used;
    return v;
  };
  ValuePtr proto = next_pickle("legacy protocol version", nullptr);
  if (proto->kind != Kind::Int || proto->i != 1001)
    throw Error("unsupported legacy protocol version (expected 1001)", tf.path);
  ValuePtr sys_info = next_pickle("legacy sys info", nullptr);
  if (auto le = sys_info->get("little_endian"); le && le->kind == Kind::Bool && !le->b)
    throw Error("big-endian legacy files are not supported", tf.path);

  std::unordered_map<std::string, std::shared_ptr<Storage>> by_key;
  struct View {
    std::shared_ptr<Storage> view;
    std::string base_key;
    uint64_t offset_bytes;
  };
  std::vector<View> views;
  PersistentLoad load_storage = [&](const ValuePtr& pid) -> ValuePtr {
    PidInfo p = parse_pid(pid);
    std::shared_ptr<Storage>& s = by_key[p.key];
    if (!s) {
      s = std::make_shared<Storage>();
      s->dtype = p.dtype;
      s->nbytes = p.numel * dtype_size(p.dtype);
      s->key = p.key;
      s->location = p.location;
    }
    if (p.view_metadata && p.view_metadata->kind == Kind::Tuple && p.view_metadata->items.size() == 3) {
      const auto& vm = p.view_metadata->items;  // (view_key, offset, view_size)
      if (vm[0]->kind != Kind::Str || vm[1]->kind != Kind::Int || vm[2]->kind != Kind::Int || vm[1]->i < 0 ||
          vm[2]->i < 0)
        throw Error("bad legacy storage view metadata");
      auto v = std::make_shared<Storage>();
      v->dtype = p.dtype;
      v->nbytes = uint64_t(vm[2]->i) * dtype_size(p.dtype);
      v->key = vm[0]->s;
      views.push_back({v, p.key, uint64_t(vm[1]->i) * dtype_size(p.dtype)});
      return torch_globals::storage_value(v);
    }
    return torch_globals::storage_value(s);
  };
  tf.root = next_pickle("legacy object", load_storage);
  ValuePtr keys = next_pickle("legacy storage keys", nullptr);
  if (keys->kind != Kind::List) throw Error("legacy storage key list is a " + keys->type_name(), tf.path);
  for (const auto& k : keys->items) {
    if (k->kind != Kind::Str) throw Error("legacy storage key is a " + k->type_name(), tf.path);
    auto it = by_key.find(k->s);
    if (it == by_key.end()) throw Error("legacy storage '" + k->s + "' is listed but never used", tf.path);
    Storage& s = *it->second;
    if (f.size() - pos < 8) throw Error("truncated before storage '" + k->s + "'", tf.path);
    int64_t numel = load_le<int64_t>(f.data() + pos);
    pos += 8;
    if (numel < 0 || uint64_t(numel) * dtype_size(s.dtype) != s.nbytes)
      throw Error("legacy storage '" + k->s + "' has " + std::to_string(numel) + " elements, expected " +
                      std::to_string(s.numel()),
                  tf.path);
    if (f.size() - pos < s.nbytes)
      throw Error("truncated in storage '" + k->s + "' (needs " + std::to_string(s.nbytes) + " bytes at offset " +
                      std::to_string(pos) + ")",
                  tf.path);
    s.data = f.data() + pos;
    s.owner = tf.file;
    tf.storages.push_back({it->second, pos, "", 0});
    pos += s.nbytes;
  }
  for (auto& [key, s] : by_key)
    if (!s->data && s->nbytes > 0) throw Error("storage '" + key + "' has no data in the file", tf.path);
  for (auto& v : views) {
    auto base = by_key.find(v.base_key);
    if (base == by_key.end() || v.offset_bytes > base->second->nbytes ||
        v.view->nbytes > base->second->nbytes - v.offset_bytes)
      throw Error("legacy storage view outside its base storage '" + v.base_key + "'", tf.path);
    v.view->data = base->second->data + v.offset_bytes;
    v.view->owner = tf.file;
  }
}

bool is_legacy_magic(const MappedFile& f) {
  return f.size() >= kLegacyMagicLen && std::memcmp(f.data(), kLegacyMagic, kLegacyMagicLen) == 0;
}

}  // namespace

void TorchFile::verify_crc() const {
  if (legacy) return;
  for (const auto& r : storages) {
    // A pass over all the data: release each piece once checked, so RSS stays small.
    constexpr uint64_t kPiece = 32 << 20;
    uint32_t c = 0;
    for (uint64_t off = 0; off < r.storage->nbytes; off += kPiece) {
      uint64_t n = std::min(kPiece, r.storage->nbytes - off);
      c = crc32_update(c, r.storage->data + off, size_t(n));
      file->advise_done(r.file_offset + off, n);
    }
    if (c != r.crc32) throw Error("CRC-32 mismatch (corrupt data)", path, "record '" + r.entry + "'");
  }
}

TorchFile load_torch_file(const std::string& path, const TorchLoadOptions& opts) {
  return load_torch_file(MappedFile::open(path), opts);
}

TorchFile load_torch_file(std::shared_ptr<MappedFile> file, const TorchLoadOptions& opts) {
  TorchFile tf;
  tf.path = file->path();
  const std::string& path = tf.path;
  tf.file = std::move(file);
  const MappedFile& f = *tf.file;
  try {
    if (ZipReader::looks_like_zip(f.data(), f.size())) {
      load_zip(tf, opts);
    } else if (is_legacy_magic(f)) {
      tf.legacy = true;
      load_legacy(tf, opts);
    } else {
      throw Error("not a PyTorch file: neither a zip archive nor the legacy magic number");
    }
  } catch (const Error& e) { throw e.with_file(path); }
  return tf;
}

}  // namespace optforge

namespace optforge {

PickledTree pickle_torch_tree(const ValuePtr& root) {
  PickledTree out;
  std::unordered_map<const Storage*, std::string> keys;
  StorageKeyFor key_for = [&](const Tensor& t) -> std::string {
    auto it = keys.find(t.storage.get());
    if (it != keys.end()) return it->second;
    std::string k = std::to_string(out.storages.size());
    keys.emplace(t.storage.get(), k);
    out.storages.push_back(t.storage);
    return k;
  };
  out.pkl = pickle_value(root, key_for);
  return out;
}

void save_torch_file(const std::string& path, const ValuePtr& root, const TorchSaveOptions& opts) {
  auto [pkl, order] = pickle_torch_tree(root);

  AtomicFile out(path);
  ZipWriter zip(out);
  const std::string& a = opts.archive_name;
  zip.add(a + "/data.pkl", pkl);
  zip.add(a + "/byteorder", "little");
  for (size_t i = 0; i < order.size(); ++i) {
    const Storage& s = *order[i];
    zip.begin_entry(a + "/data/" + std::to_string(i), s.nbytes);
    stream_storage(s, [&](const uint8_t* p, size_t n) { zip.write(p, n); });
    zip.end_entry();
    // A verbatim copy of a zip record: its CRC must be the one the input recorded.
    if (s.source_crc32 && !s.is_lazy() && zip.last_crc32() != *s.source_crc32)
      throw Error(
          "CRC-32 mismatch: the record's data does not match its checksum (corrupt file); nothing was written to " +
              path,
          s.source_file, "storage record 'data/" + s.key + "'");
  }
  zip.add(a + "/version", "3\n");
  zip.finish();
  out.commit();
}

namespace {

void collect(const ValuePtr& v, const std::string& prefix, std::vector<NamedTensor>& out, int depth) {
  if (!v || depth > 2000) return;
  auto join = [&](const std::string& k) { return prefix.empty() ? k : prefix + "." + k; };
  switch (v->kind) {
    case Value::Kind::Tensor: out.push_back({prefix, v->tensor}); return;
    case Value::Kind::Dict:
      for (const auto& [k, x] : v->entries) {
        std::string name = k->kind == Value::Kind::Str   ? k->s
                           : k->kind == Value::Kind::Int ? std::to_string(k->i)
                                                         : "?";
        collect(x, join(name), out, depth + 1);
      }
      return;
    case Value::Kind::List:
    case Value::Kind::Tuple:
      for (size_t i = 0; i < v->items.size(); ++i) collect(v->items[i], join(std::to_string(i)), out, depth + 1);
      return;
    case Value::Kind::Object: collect(v->state, prefix, out, depth + 1); return;
    default: return;
  }
}

}  // namespace

std::vector<NamedTensor> collect_tensors(const ValuePtr& root) {
  std::vector<NamedTensor> out;
  collect(root, "", out, 0);
  return out;
}

}  // namespace optforge
