#include "io/zip_reader.h"

#include <algorithm>
#include <cstdio>

#include "io/byte_io.h"
#include "io/crc32.h"
#include "util/error.h"

namespace optforge {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50, kZip64EocdSig = 0x06064b50,
                   kZip64LocatorSig = 0x07064b50;

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

bool ZipReader::looks_like_zip(const uint8_t* data, uint64_t size) {
  return size >= 4 && load_le<uint32_t>(data) == kLocalSig;
}

namespace {

// The bounds every record is checked against, and the one way a malformed archive is reported.
struct Bounds {
  const uint8_t* data;
  uint64_t size;
  const std::string& path;
  [[noreturn]] void fail(const std::string& msg) const { throw Error(msg, path, "zip"); }
  void need(uint64_t off, uint64_t len, const std::string& what) const {
    if (off > size || len > size - off)
      fail(what + " at offset " + std::to_string(off) + " runs past the end of the " + std::to_string(size) +
           "-byte file (truncated?)");
  }
};

struct Directory {
  uint64_t count = 0, size = 0, offset = 0;
};

// The central directory's place and entry count, from the end-of-central-directory record (in
// the last 22 + 65535 bytes) and, when present, its zip64 counterpart.
Directory find_directory(const Bounds& b) {
  if (b.size < 22) b.fail("file too small for a zip archive (" + std::to_string(b.size) + " bytes)");
  uint64_t lo = b.size >= 22 + 65535 ? b.size - 22 - 65535 : 0, eocd = UINT64_MAX;
  for (uint64_t p = b.size - 22 + 1; p-- > lo;) {
    if (load_le<uint32_t>(b.data + p) == kEocdSig) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) b.fail("no end-of-central-directory record (truncated or not a zip)");
  Directory d{load_le<uint16_t>(b.data + eocd + 10), load_le<uint32_t>(b.data + eocd + 12),
              load_le<uint32_t>(b.data + eocd + 16)};
  if (eocd >= 20 && load_le<uint32_t>(b.data + eocd - 20) == kZip64LocatorSig) {
    uint64_t z64 = load_le<uint64_t>(b.data + eocd - 20 + 8);
    b.need(z64, 56, "zip64 end-of-central-directory record");
    if (load_le<uint32_t>(b.data + z64) != kZip64EocdSig)
      b.fail("bad zip64 end-of-central-directory signature at offset " + std::to_string(z64));
    d = {load_le<uint64_t>(b.data + z64 + 32), load_le<uint64_t>(b.data + z64 + 40),
         load_le<uint64_t>(b.data + z64 + 48)};
  }
  b.need(d.offset, d.size, "central directory");
  if (d.count > d.size / 46)
    b.fail("central directory claims " + std::to_string(d.count) + " entries in " + std::to_string(d.size) + " bytes");
  return d;
}

// zip64 extra field: the 8-byte values present are those whose 32-bit field is saturated.
void read_zip64_extra(const Bounds& b, const uint8_t* x, uint16_t extra_len, const std::string& name, uint64_t& usize,
                      uint64_t& csize, uint64_t& local) {
  for (uint64_t q = 0; q + 4 <= extra_len;) {
    uint16_t id = load_le<uint16_t>(x + q), len = load_le<uint16_t>(x + q + 2);
    if (q + 4 + len > extra_len) break;
    if (id == 0x0001) {
      const uint8_t* f = x + q + 4;
      uint64_t left = len;
      auto take = [&](uint64_t& v) {
        if (v != 0xffffffffu) return;
        if (left < 8) b.fail("zip64 extra field of entry '" + name + "' is too short");
        v = load_le<uint64_t>(f);
        f += 8;
        left -= 8;
      };
      take(usize);
      take(csize);
      take(local);
    }
    q += 4 + len;
  }
}

// Central directory entry `i` at offset p (< end); returns it and moves p past it. Only stored
// (uncompressed) entries are accepted, as torch writes them; the data must lie inside the file.
ZipEntry read_entry(const Bounds& b, uint64_t& p, uint64_t end, uint64_t i) {
  if (p + 46 > end) b.fail("central directory entry " + std::to_string(i) + " is truncated");
  const uint8_t* h = b.data + p;
  if (load_le<uint32_t>(h) != kCentralSig)
    b.fail("bad central directory signature " + hex(load_le<uint32_t>(h)) + " at offset " + std::to_string(p));
  uint16_t method = load_le<uint16_t>(h + 10);
  ZipEntry e;
  e.crc32 = load_le<uint32_t>(h + 16);
  uint64_t csize = load_le<uint32_t>(h + 20), usize = load_le<uint32_t>(h + 24);
  uint16_t name_len = load_le<uint16_t>(h + 28), extra_len = load_le<uint16_t>(h + 30),
           comment_len = load_le<uint16_t>(h + 32);
  uint64_t local = load_le<uint32_t>(h + 42);
  if (p + 46 + name_len + extra_len + comment_len > end)
    b.fail("central directory entry " + std::to_string(i) + " is truncated");
  e.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
  read_zip64_extra(b, h + 46 + name_len, extra_len, e.name, usize, csize, local);
  if (method != 0)
    b.fail("entry '" + e.name + "' is compressed (method " + std::to_string(method) +
           "); torch writes stored entries only (was the file re-zipped?)");
  if (csize != usize)
    b.fail("entry '" + e.name + "' has compressed size " + std::to_string(csize) + " != size " + std::to_string(usize));
  b.need(local, 30, "local header of '" + e.name + "'");
  const uint8_t* lh = b.data + local;
  if (load_le<uint32_t>(lh) != kLocalSig)
    b.fail("bad local header signature for entry '" + e.name + "' at offset " + std::to_string(local));
  e.data_offset = local + 30 + load_le<uint16_t>(lh + 26) + load_le<uint16_t>(lh + 28);
  e.size = usize;
  b.need(e.data_offset, e.size, "data of entry '" + e.name + "'");
  p += 46 + name_len + extra_len + comment_len;
  return e;
}

}  // namespace

ZipReader::ZipReader(const uint8_t* data, uint64_t size, std::string path)
    : data_(data), size_(size), path_(std::move(path)) {
  const Bounds b{data_, size_, path_};
  const Directory d = find_directory(b);
  entries_.reserve(size_t(d.count));
  uint64_t p = d.offset;
  for (uint64_t i = 0; i < d.count; ++i) entries_.push_back(read_entry(b, p, d.offset + d.size, i));
  for (size_t i = 0; i < entries_.size(); ++i)
    if (!index_.emplace(entries_[i].name, i).second) b.fail("entry '" + entries_[i].name + "' appears twice");
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void ZipReader::verify_crc(const ZipEntry& e) const {
  uint32_t c = crc32(data_ + e.data_offset, size_t(e.size));
  if (c != e.crc32)
    throw Error("CRC-32 mismatch: expected " + hex(e.crc32) + ", found " + hex(c) + " (corrupt data)", path_,
                "entry '" + e.name + "'");
}

}  // namespace optforge
