#include "checkpoint/producer.h"

#include <algorithm>
#include <cstring>

#include "tensor/convert.h"
#include "util/error.h"

namespace optforge::ckpt {
namespace {

class Bytes final : public Producer {
 public:
  Bytes(const uint8_t* d, uint64_t n, std::shared_ptr<const MappedFile> f, std::shared_ptr<const void> keep)
      : d_(d), n_(n), f_(std::move(f)), keep_(std::move(keep)) {}
  uint64_t size() const override { return n_; }
  void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override {
    if (n) sink(d_ + off, size_t(n));
  }
  void release(uint64_t off, uint64_t n) const override {
    if (f_ && n) f_->advise_done(uint64_t(d_ - f_->data()) + off, n);
  }

 private:
  const uint8_t* d_;
  uint64_t n_;
  std::shared_ptr<const MappedFile> f_;
  std::shared_ptr<const void> keep_;
};

class Zeros final : public Producer {
 public:
  explicit Zeros(uint64_t n) : n_(n) {}
  uint64_t size() const override { return n_; }
  void produce(uint64_t, uint64_t n, const PieceSink& sink) const override {
    static const std::vector<uint8_t> z(1 << 16, 0);
    while (n) {
      size_t k = size_t(std::min<uint64_t>(n, z.size()));
      sink(z.data(), k);
      n -= k;
    }
  }
  void release(uint64_t, uint64_t) const override {}

 private:
  uint64_t n_;
};

class Concat final : public Producer {
 public:
  explicit Concat(std::vector<ProducerPtr> parts) : parts_(std::move(parts)) {
    starts_.reserve(parts_.size() + 1);
    uint64_t s = 0;
    for (const auto& p : parts_) {
      starts_.push_back(s);
      s += p->size();
    }
    starts_.push_back(s);
  }
  uint64_t size() const override { return starts_.back(); }
  template <typename F>
  void each(uint64_t off, uint64_t n, F&& f) const {
    if (!n) return;
    size_t i = size_t(std::upper_bound(starts_.begin(), starts_.end(), off) - starts_.begin()) - 1;
    for (; n && i < parts_.size(); ++i) {
      uint64_t inner = off - starts_[i], k = std::min(n, parts_[i]->size() - inner);
      if (k) f(*parts_[i], inner, k);
      off += k;
      n -= k;
    }
  }
  void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override {
    each(off, n, [&](const Producer& p, uint64_t o, uint64_t k) { p.produce(o, k, sink); });
  }
  void release(uint64_t off, uint64_t n) const override {
    each(off, n, [&](const Producer& p, uint64_t o, uint64_t k) { p.release(o, k); });
  }

 private:
  std::vector<ProducerPtr> parts_;
  std::vector<uint64_t> starts_;
};

class Slice final : public Producer {
 public:
  Slice(ProducerPtr p, uint64_t off, uint64_t n) : p_(std::move(p)), off_(off), n_(n) {}
  uint64_t size() const override { return n_; }
  void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override { p_->produce(off_ + off, n, sink); }
  void release(uint64_t off, uint64_t n) const override { p_->release(off_ + off, n); }

 private:
  ProducerPtr p_;
  uint64_t off_, n_;
};

class Interleave final : public Producer {
 public:
  Interleave(uint64_t rows, std::vector<StridedPiece> pieces) : rows_(rows), pieces_(std::move(pieces)) {
    for (const auto& p : pieces_) row_ += p.len;
  }
  uint64_t size() const override { return rows_ * row_; }
  void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override {
    while (n) {
      uint64_t r = off / row_, in = off % row_;
      for (const auto& p : pieces_) {
        if (!n) break;
        if (in >= p.len) {
          in -= p.len;
          continue;
        }
        uint64_t k = std::min(n, p.len - in);
        p.src->produce(p.base + r * p.stride + in, k, sink);
        off += k;
        n -= k;
        in = 0;
      }
    }
  }
  void release(uint64_t off, uint64_t n) const override {
    if (!n || !row_) return;
    uint64_t r0 = off / row_, r1 = (off + n + row_ - 1) / row_;
    for (const auto& p : pieces_) {
      uint64_t b = p.base + r0 * p.stride, len = (r1 - r0 - 1) * p.stride + p.len;
      p.src->release(b, len);
    }
  }

 private:
  uint64_t rows_, row_ = 0;
  std::vector<StridedPiece> pieces_;
};

class Cast final : public Producer {
 public:
  Cast(ProducerPtr p, DType from, DType to)
      : p_(std::move(p)), from_(from), to_(to), fs_(dtype_size(from)), ts_(dtype_size(to)) {}
  uint64_t size() const override { return p_->size() / fs_ * ts_; }
  void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override {
    if (off % ts_ || n % ts_) throw Error("internal: cast producer range not element-aligned");
    constexpr uint64_t kBlock = 1 << 18;  // elements
    thread_local std::vector<uint8_t> in, out;
    uint64_t e = off / ts_, end = (off + n) / ts_;
    while (e < end) {
      uint64_t k = std::min(kBlock, end - e);
      in.resize(size_t(k * fs_));
      out.resize(size_t(k * ts_));
      p_->read(e * fs_, in.data(), k * fs_);
      convert_elements(from_, in.data(), to_, out.data(), k);
      sink(out.data(), size_t(k * ts_));
      e += k;
    }
  }
  void release(uint64_t off, uint64_t n) const override { p_->release(off / ts_ * fs_, n / ts_ * fs_); }

 private:
  ProducerPtr p_;
  DType from_, to_;
  uint64_t fs_, ts_;
};

// Bytes of a storage: real bytes, or a lazy storage (generated, or cast from another).
class StorageProducer final : public Producer {
 public:
  explicit StorageProducer(std::shared_ptr<Storage> s) : s_(std::move(s)) {}
  uint64_t size() const override { return s_->nbytes; }
  void produce(uint64_t off, uint64_t n, const PieceSink& sink) const override {
    if (!s_->is_lazy()) {
      if (n) sink(s_->data + off, size_t(n));
      return;
    }
    if (s_->cast_from) {
      cast(storage_bytes(s_->cast_from), s_->cast_from->dtype, s_->dtype)->produce(off, n, sink);
      return;
    }
    thread_local std::vector<uint8_t> buf;
    constexpr uint64_t kBlock = 1 << 20;
    while (n) {
      uint64_t k = std::min(n, kBlock);
      buf.resize(size_t(k));
      s_->generate(off, buf.data(), size_t(k));
      sink(buf.data(), size_t(k));
      off += k;
      n -= k;
    }
  }
  void release(uint64_t, uint64_t) const override {}

 private:
  std::shared_ptr<Storage> s_;
};

}  // namespace

ProducerPtr storage_bytes(std::shared_ptr<Storage> s) { return std::make_shared<StorageProducer>(std::move(s)); }

void Producer::read(uint64_t off, uint8_t* dst, uint64_t n) const {
  produce(off, n, [&](const uint8_t* p, size_t k) {
    std::memcpy(dst, p, k);
    dst += k;
  });
}

ProducerPtr bytes(const uint8_t* data, uint64_t n, std::shared_ptr<const MappedFile> file,
                  std::shared_ptr<const void> keep) {
  return std::make_shared<Bytes>(data, n, std::move(file), std::move(keep));
}

ProducerPtr tensor_bytes(const Tensor& t, std::shared_ptr<const MappedFile> file) {
  if (t.storage->is_lazy()) {
    if (!t.is_contiguous()) throw Error("internal: a strided view of a generated storage");
    const uint64_t es = dtype_size(t.dtype);
    return slice(storage_bytes(t.storage), uint64_t(t.offset) * es, t.nbytes());
  }
  if (!t.is_contiguous()) {
    Tensor c = t.contiguous();
    return bytes(c.data(), c.nbytes(), nullptr, c.storage);
  }
  t.check_bounds();
  const uint8_t* d = t.data();
  if (file && (d < file->data() || d + t.nbytes() > file->data() + file->size())) file = nullptr;
  return bytes(d, t.nbytes(), std::move(file), t.storage);
}

ProducerPtr zeros(uint64_t n) { return std::make_shared<Zeros>(n); }

ProducerPtr concat(std::vector<ProducerPtr> parts) {
  if (parts.size() == 1) return parts[0];
  return std::make_shared<Concat>(std::move(parts));
}

ProducerPtr slice(ProducerPtr p, uint64_t off, uint64_t n) {
  if (off + n > p->size()) throw Error("internal: slice outside its producer");
  if (off == 0 && n == p->size()) return p;
  return std::make_shared<Slice>(std::move(p), off, n);
}

ProducerPtr interleave(uint64_t rows, std::vector<StridedPiece> pieces) {
  if (pieces.size() == 1 && pieces[0].stride == pieces[0].len)
    return slice(pieces[0].src, pieces[0].base, rows * pieces[0].len);
  return std::make_shared<Interleave>(rows, std::move(pieces));
}

ProducerPtr cast(ProducerPtr p, DType from, DType to) {
  if (from == to) return p;
  return std::make_shared<Cast>(std::move(p), from, to);
}

std::shared_ptr<Storage> storage_of(ProducerPtr p, DType dtype) {
  auto s = std::make_shared<Storage>();
  s->dtype = dtype;
  s->nbytes = p->size();
  // Writers outside the group writer (convert, the model loader) stream a storage front to back:
  // drop the input pages behind each piece once read, so RSS stays bounded there too.
  s->generate = [p](uint64_t off, uint8_t* dst, size_t n) {
    p->read(off, dst, n);
    p->release(off, n);
  };
  return s;
}

}  // namespace optforge::ckpt
