#include "io/zip_writer.h"

#include "io/byte_io.h"
#include "io/crc32.h"
#include "util/error.h"

namespace optforge {
namespace {

constexpr uint64_t kAlign = 64;
constexpr uint64_t k32 = 0xffffffffu;
// 1980-01-01 00:00 in DOS format, like torch (the date carries no meaning here).
constexpr uint16_t kDosTime = 0, kDosDate = (0 << 9) | (1 << 5) | 1;

}  // namespace

std::string zip_local_header(const ZipRecord& r) {
  const bool z64 = r.size >= k32;
  std::string h;
  append_le<uint32_t>(h, 0x04034b50);
  append_le<uint16_t>(h, z64 ? 45 : 20);  // version needed
  append_le<uint16_t>(h, 0x0800);         // names are UTF-8
  append_le<uint16_t>(h, 0);              // stored
  append_le<uint16_t>(h, kDosTime);
  append_le<uint16_t>(h, kDosDate);
  append_le<uint32_t>(h, r.crc);
  append_le<uint32_t>(h, z64 ? uint32_t(k32) : uint32_t(r.size));
  append_le<uint32_t>(h, z64 ? uint32_t(k32) : uint32_t(r.size));
  append_le<uint16_t>(h, uint16_t(r.name.size()));
  std::string extra;
  if (z64) {
    append_le<uint16_t>(extra, 0x0001);
    append_le<uint16_t>(extra, 16);
    append_le<uint64_t>(extra, r.size);
    append_le<uint64_t>(extra, r.size);
  }
  // Pad with an "FB" extra field so the data starts on a 64-byte boundary.
  uint64_t data_start = r.header_offset + 30 + r.name.size() + extra.size() + 4;
  uint64_t pad = (kAlign - data_start % kAlign) % kAlign;
  append_le<uint16_t>(extra, 0x4246);
  append_le<uint16_t>(extra, uint16_t(pad));
  extra.append(pad, 'Z');
  append_le<uint16_t>(h, uint16_t(extra.size()));
  h += r.name;
  h += extra;
  return h;
}

void ZipWriter::begin_entry(const std::string& name, uint64_t size) {
  if (open_) throw Error("internal: zip entry '" + name + "' begun while another is open", out_.path());
  ZipRecord r{name, out_.position(), size, 0};
  out_.write(zip_local_header(r));  // CRC-32 patched by end_entry()
  records_.push_back(std::move(r));
  open_ = true;
  written_ = 0;
  crc_ = 0;
}

void ZipWriter::write(const void* data, size_t n) {
  crc_ = crc32_update(crc_, data, n);
  written_ += n;
  out_.write(data, n);
}

void ZipWriter::end_entry() {
  ZipRecord& r = records_.back();
  if (written_ != r.size)
    throw Error("internal: zip entry '" + r.name + "' declared " + std::to_string(r.size) + " bytes but got " +
                    std::to_string(written_),
                out_.path());
  r.crc = crc_;
  std::string c;
  append_le<uint32_t>(c, crc_);
  out_.pwrite(c.data(), c.size(), r.header_offset + 14);
  open_ = false;
}

void ZipWriter::add(const std::string& name, std::string_view data) {
  begin_entry(name, data.size());
  write(data.data(), data.size());
  end_entry();
}

std::string zip_central_directory(const std::vector<ZipRecord>& records, uint64_t cd_start) {
  std::string cd;
  for (const ZipRecord& r : records) {
    const bool big_size = r.size >= k32, big_off = r.header_offset >= k32;
    std::string extra;
    if (big_size || big_off) {
      append_le<uint16_t>(extra, 0x0001);
      append_le<uint16_t>(extra, uint16_t((big_size ? 16 : 0) + (big_off ? 8 : 0)));
      if (big_size) {
        append_le<uint64_t>(extra, r.size);
        append_le<uint64_t>(extra, r.size);
      }
      if (big_off) append_le<uint64_t>(extra, r.header_offset);
    }
    append_le<uint32_t>(cd, 0x02014b50);
    append_le<uint16_t>(cd, 45);  // made by
    append_le<uint16_t>(cd, big_size || big_off ? 45 : 20);
    append_le<uint16_t>(cd, 0x0800);
    append_le<uint16_t>(cd, 0);
    append_le<uint16_t>(cd, kDosTime);
    append_le<uint16_t>(cd, kDosDate);
    append_le<uint32_t>(cd, r.crc);
    append_le<uint32_t>(cd, big_size ? uint32_t(k32) : uint32_t(r.size));
    append_le<uint32_t>(cd, big_size ? uint32_t(k32) : uint32_t(r.size));
    append_le<uint16_t>(cd, uint16_t(r.name.size()));
    append_le<uint16_t>(cd, uint16_t(extra.size()));
    append_le<uint16_t>(cd, 0);  // comment
    append_le<uint16_t>(cd, 0);  // disk
    append_le<uint16_t>(cd, 0);  // internal attributes
    append_le<uint32_t>(cd, 0);  // external attributes
    append_le<uint32_t>(cd, big_off ? uint32_t(k32) : uint32_t(r.header_offset));
    cd += r.name;
    cd += extra;
  }
  const uint64_t n = records.size(), cd_size = cd.size();
  const bool z64 = n >= 0xffff || cd_start >= k32 || cd_size >= k32;
  if (z64) {
    const uint64_t z64_off = cd_start + cd_size;
    append_le<uint32_t>(cd, 0x06064b50);
    append_le<uint64_t>(cd, 44);
    append_le<uint16_t>(cd, 45);
    append_le<uint16_t>(cd, 45);
    append_le<uint32_t>(cd, 0);
    append_le<uint32_t>(cd, 0);
    append_le<uint64_t>(cd, n);
    append_le<uint64_t>(cd, n);
    append_le<uint64_t>(cd, cd_size);
    append_le<uint64_t>(cd, cd_start);
    append_le<uint32_t>(cd, 0x07064b50);
    append_le<uint32_t>(cd, 0);
    append_le<uint64_t>(cd, z64_off);
    append_le<uint32_t>(cd, 1);
  }
  append_le<uint32_t>(cd, 0x06054b50);
  append_le<uint16_t>(cd, 0);
  append_le<uint16_t>(cd, 0);
  append_le<uint16_t>(cd, z64 ? 0xffff : uint16_t(n));
  append_le<uint16_t>(cd, z64 ? 0xffff : uint16_t(n));
  append_le<uint32_t>(cd, z64 ? uint32_t(k32) : uint32_t(cd_size));
  append_le<uint32_t>(cd, z64 ? uint32_t(k32) : uint32_t(cd_start));
  append_le<uint16_t>(cd, 0);
  return cd;
}

void ZipWriter::finish() { out_.write(zip_central_directory(records_, out_.position())); }

}  // namespace optforge
