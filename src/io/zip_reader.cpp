#include "io/zip_reader.h"

#include <algorithm>
#include <cstdio>

#include "io/byte_io.h"
#include "io/crc32.h"
#include "util/error.h"

namespace optforge {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEocdSig = 0x06054b50,
                   kZip64EocdSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

bool ZipReader::looks_like_zip(const uint8_t* data, uint64_t size) {
  return size >= 4 && load_le<uint32_t>(data) == kLocalSig;
}

ZipReader::ZipReader(const uint8_t* data, uint64_t size, std::string path)
    : data_(data), size_(size), path_(std::move(path)) {
  auto fail = [&](const std::string& msg) { throw Error(msg, path_, "zip"); };
  auto need = [&](uint64_t off, uint64_t len, const char* what) {
    if (off > size_ || len > size_ - off)
      fail(std::string(what) + " at offset " + std::to_string(off) + " runs past the end of the " +
           std::to_string(size_) + "-byte file (truncated?)");
  };

  if (size_ < 22) fail("file too small for a zip archive (" + std::to_string(size_) + " bytes)");
  // The end-of-central-directory record is in the last 22 + 65535 bytes.
  uint64_t lo = size_ >= 22 + 65535 ? size_ - 22 - 65535 : 0, eocd = UINT64_MAX;
  for (uint64_t p = size_ - 22 + 1; p-- > lo;) {
    if (load_le<uint32_t>(data_ + p) == kEocdSig) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) fail("no end-of-central-directory record (truncated or not a zip)");

  uint64_t count = load_le<uint16_t>(data_ + eocd + 10);
  uint64_t cd_size = load_le<uint32_t>(data_ + eocd + 12);
  uint64_t cd_off = load_le<uint32_t>(data_ + eocd + 16);
  if (eocd >= 20 && load_le<uint32_t>(data_ + eocd - 20) == kZip64LocatorSig) {
    uint64_t z64 = load_le<uint64_t>(data_ + eocd - 20 + 8);
    need(z64, 56, "zip64 end-of-central-directory record");
    if (load_le<uint32_t>(data_ + z64) != kZip64EocdSig)
      fail("bad zip64 end-of-central-directory signature at offset " + std::to_string(z64));
    count = load_le<uint64_t>(data_ + z64 + 32);
    cd_size = load_le<uint64_t>(data_ + z64 + 40);
    cd_off = load_le<uint64_t>(data_ + z64 + 48);
  }
  need(cd_off, cd_size, "central directory");
  if (count > cd_size / 46) fail("central directory claims " + std::to_string(count) + " entries in " +
                                 std::to_string(cd_size) + " bytes");

  entries_.reserve(size_t(count));
  uint64_t p = cd_off, end = cd_off + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (p + 46 > end) fail("central directory entry " + std::to_string(i) + " is truncated");
    const uint8_t* h = data_ + p;
    if (load_le<uint32_t>(h) != kCentralSig)
      fail("bad central directory signature " + hex(load_le<uint32_t>(h)) + " at offset " +
           std::to_string(p));
    uint16_t method = load_le<uint16_t>(h + 10);
    ZipEntry e;
    e.crc32 = load_le<uint32_t>(h + 16);
    uint64_t csize = load_le<uint32_t>(h + 20), usize = load_le<uint32_t>(h + 24);
    uint16_t name_len = load_le<uint16_t>(h + 28), extra_len = load_le<uint16_t>(h + 30),
             comment_len = load_le<uint16_t>(h + 32);
    uint64_t local = load_le<uint32_t>(h + 42);
    if (p + 46 + name_len + extra_len + comment_len > end)
      fail("central directory entry " + std::to_string(i) + " is truncated");
    e.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    // zip64 extra: the 8-byte fields present are those whose 32-bit field is saturated.
    const uint8_t* x = h + 46 + name_len;
    for (uint64_t q = 0; q + 4 <= extra_len;) {
      uint16_t id = load_le<uint16_t>(x + q), len = load_le<uint16_t>(x + q + 2);
      if (q + 4 + len > extra_len) break;
      if (id == 0x0001) {
        const uint8_t* f = x + q + 4;
        uint64_t left = len;
        auto take = [&](uint64_t& v) {
          if (v != 0xffffffffu) return;
          if (left < 8) fail("zip64 extra field of entry '" + e.name + "' is too short");
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
    if (method != 0)
      fail("entry '" + e.name + "' is compressed (method " + std::to_string(method) +
           "); torch writes stored entries only (was the file re-zipped?)");
    if (csize != usize)
      fail("entry '" + e.name + "' has compressed size " + std::to_string(csize) +
           " != size " + std::to_string(usize));
    need(local, 30, ("local header of '" + e.name + "'").c_str());
    const uint8_t* lh = data_ + local;
    if (load_le<uint32_t>(lh) != kLocalSig)
      fail("bad local header signature for entry '" + e.name + "' at offset " + std::to_string(local));
    e.data_offset = local + 30 + load_le<uint16_t>(lh + 26) + load_le<uint16_t>(lh + 28);
    e.size = usize;
    need(e.data_offset, e.size, ("data of entry '" + e.name + "'").c_str());
    entries_.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
  for (size_t i = 0; i < entries_.size(); ++i)
    if (!index_.emplace(entries_[i].name, i).second)
      fail("entry '" + entries_[i].name + "' appears twice");
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void ZipReader::verify_crc(const ZipEntry& e) const {
  uint32_t c = crc32(data_ + e.data_offset, size_t(e.size));
  if (c != e.crc32)
    throw Error("CRC-32 mismatch: expected " + hex(e.crc32) + ", found " + hex(c) + " (corrupt data)",
                path_, "entry '" + e.name + "'");
}

}  // namespace optforge
