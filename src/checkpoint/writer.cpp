#include "checkpoint/writer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "formats/torch_file.h"
#include "io/atomic_file.h"
#include "io/crc32.h"
#include "io/zip_writer.h"
#include "util/error.h"
#include "util/parallel_for.h"

namespace optforge::ckpt {
namespace {

constexpr size_t kNoRecord = size_t(-1);

}  // namespace

Tensor produced_tensor(ProducerPtr p, DType dtype, const Shape& shape, ProducerMap& map) {
  auto s = storage_of(p, dtype);
  map[s.get()] = std::move(p);
  Tensor t = Tensor::view_of(s, shape);
  if (t.nbytes() != s->nbytes)
    throw Error("internal: produced tensor of shape " + t.shape_string() + " has " + std::to_string(s->nbytes) +
                " bytes");
  return t;
}

struct GroupWriter::Plan {
  struct Record {
    std::string name;
    uint64_t header_off = 0, data_off = 0, size = 0;
    std::string inline_data;  // data.pkl, byteorder, version
    ProducerPtr producer;     // storage records
    uint32_t crc = 0;
    std::vector<size_t> units;
  };
  struct File {
    OutputSpec spec;
    std::vector<Record> records;
    uint64_t cd_off = 0, size = 0, data_bytes = 0;
    size_t tensors = 0;
    std::mutex mutex;
    std::unique_ptr<AtomicFile> out;
    std::atomic<size_t> remaining{0};
  };
  struct Unit {
    size_t file, record;
    uint64_t off, n;
    uint32_t crc = 0;
  };
  std::vector<std::unique_ptr<File>> files;
  std::vector<Unit> units;
  uint64_t total = 0;

  static ZipRecord zip_record(const Record& r) { return {r.name, r.header_off, r.size, r.crc}; }
  static uint64_t header_size(const std::string& name, uint64_t header_off, uint64_t size) {
    return zip_local_header({name, header_off, size, 0}).size();
  }
  static std::string local_header(const Record& r) { return zip_local_header(zip_record(r)); }
  static std::string central_directory(const std::vector<Record>& records, uint64_t cd_start) {
    std::vector<ZipRecord> z;
    for (const Record& r : records) z.push_back(zip_record(r));
    return zip_central_directory(z, cd_start);
  }

  void open(File& f) {
    std::lock_guard<std::mutex> lock(f.mutex);
    if (f.out) return;
    f.out = std::make_unique<AtomicFile>(f.spec.path);
    f.out->resize(f.size);
  }

  // Headers (with the CRCs now known), small records and the central directory; then fsync.
  void finalize(File& f) {
    open(f);
    for (Record& r : f.records) {
      if (r.producer) {
        uint32_t crc = 0;
        for (size_t u : r.units) crc = crc32_combine(crc, units[u].crc, units[u].n);
        r.crc = crc;
      } else {
        r.crc = crc32(r.inline_data.data(), r.inline_data.size());
      }
      std::string h = local_header(r);
      if (r.header_off + h.size() != r.data_off) throw Error("internal: zip header size changed", f.spec.path);
      f.out->pwrite(h.data(), h.size(), r.header_off);
      if (!r.producer && !r.inline_data.empty()) f.out->pwrite(r.inline_data.data(), r.inline_data.size(), r.data_off);
    }
    std::string cd = central_directory(f.records, f.cd_off);
    if (f.cd_off + cd.size() != f.size) throw Error("internal: central directory size changed", f.spec.path);
    f.out->pwrite(cd.data(), cd.size(), f.cd_off);
    f.out->finish();
  }

  void run_unit(Unit& u, const std::function<void(uint64_t)>& progress) {
    File& f = *files[u.file];
    open(f);
    if (u.record != kNoRecord) {
      const Record& r = f.records[u.record];
      constexpr size_t kBuf = 4 << 20;
      thread_local std::vector<uint8_t> buf;
      buf.reserve(kBuf);
      buf.clear();
      uint64_t pos = r.data_off + u.off;
      uint32_t crc = 0;
      uint64_t written = 0;
      auto flush = [&] {
        if (buf.empty()) return;
        f.out->pwrite(buf.data(), buf.size(), pos);
        pos += buf.size();
        buf.clear();
      };
      r.producer->produce(u.off, u.n, [&](const uint8_t* p, size_t k) {
        crc = crc32_update(crc, p, k);
        written += k;
        if (k >= kBuf / 4) {
          flush();
          f.out->pwrite(p, k, pos);
          pos += k;
          return;
        }
        if (buf.size() + k > kBuf) flush();
        buf.insert(buf.end(), p, p + k);
      });
      flush();
      if (written != u.n)
        throw Error("internal: produced " + std::to_string(written) + " bytes for a unit of " + std::to_string(u.n),
                    f.spec.path, r.name);
      u.crc = crc;
      r.producer->release(u.off, u.n);
      if (progress) progress(u.n);
    }
    if (--f.remaining == 0) finalize(f);
  }
};

GroupWriter::GroupWriter(std::vector<OutputSpec> specs, const ProducerMap& producers, uint64_t unit_bytes)
    : plan_(std::make_unique<Plan>()) {
  unit_bytes = std::max<uint64_t>(unit_bytes / 64 * 64, 64);
  for (auto& spec : specs) {
    auto fp = std::make_unique<Plan::File>();
    Plan::File& f = *fp;
    f.spec = std::move(spec);
    auto [pickled, order] = pickle_torch_tree(f.spec.root);
    const std::string& a = f.spec.archive;
    Plan::Record pkl;
    pkl.name = a + "/data.pkl";
    pkl.inline_data = std::move(pickled);
    f.records.push_back(std::move(pkl));
    Plan::Record bo;
    bo.name = a + "/byteorder";
    bo.inline_data = "little";
    f.records.push_back(std::move(bo));
    for (size_t i = 0; i < order.size(); ++i) {
      Plan::Record r;
      r.name = a + "/data/" + std::to_string(i);
      auto it = producers.find(order[i].get());
      r.producer = it != producers.end() ? it->second : storage_bytes(order[i]);
      if (r.producer->size() != order[i]->nbytes)
        throw Error("internal: producer size differs from its storage", f.spec.path, r.name);
      f.records.push_back(std::move(r));
    }
    Plan::Record ver;
    ver.name = a + "/version";
    ver.inline_data = "3\n";
    f.records.push_back(std::move(ver));
    uint64_t pos = 0;
    for (Plan::Record& r : f.records) {
      r.size = r.producer ? r.producer->size() : r.inline_data.size();
      r.header_off = pos;
      r.data_off = pos + Plan::header_size(r.name, pos, r.size);
      pos = r.data_off + r.size;
    }
    f.cd_off = pos;
    f.size = pos + Plan::central_directory(f.records, pos).size();
    f.tensors = order.size();
    plan_->files.push_back(std::move(fp));
  }
  // Units: file by file (so few outputs are open at once), each record cut into ranges.
  for (size_t fi = 0; fi < plan_->files.size(); ++fi) {
    Plan::File& f = *plan_->files[fi];
    size_t before = plan_->units.size();
    for (size_t ri = 0; ri < f.records.size(); ++ri) {
      Plan::Record& r = f.records[ri];
      if (!r.producer) continue;
      f.data_bytes += r.size;
      uint64_t off = 0;
      do {
        uint64_t n = std::min(unit_bytes, r.size - off);
        r.units.push_back(plan_->units.size());
        plan_->units.push_back({fi, ri, off, n});
        off += n;
      } while (off < r.size);
    }
    if (plan_->units.size() == before) plan_->units.push_back({fi, kNoRecord, 0, 0});
    f.remaining = plan_->units.size() - before;
    plan_->total += f.data_bytes;
  }
}

GroupWriter::~GroupWriter() = default;

std::vector<GroupWriter::FileInfo> GroupWriter::files() const {
  std::vector<FileInfo> out;
  for (const auto& f : plan_->files) out.push_back({f->spec.path, f->size, f->data_bytes, f->tensors});
  return out;
}

uint64_t GroupWriter::total_data_bytes() const { return plan_->total; }
size_t GroupWriter::unit_count() const { return plan_->units.size(); }

void GroupWriter::run(int threads, const std::function<void(uint64_t)>& progress) {
  parallel_for(plan_->units.size(), threads, [&](size_t i) { plan_->run_unit(plan_->units[i], progress); });
  std::vector<AtomicFile*> outs;
  for (auto& f : plan_->files) {
    if (!f->out) throw Error("internal: output was never written", f->spec.path);
    outs.push_back(f->out.get());
  }
  AtomicFile::commit_all(outs);
}

}  // namespace optforge::ckpt
