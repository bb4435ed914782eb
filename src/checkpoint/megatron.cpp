#include "checkpoint/megatron.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "opt/roles.h"
#include "tensor/convert.h"
#include "util/error.h"

namespace optforge::ckpt {
namespace {

bool has(const std::string& s, const char* sub) { return s.find(sub) != std::string::npos; }

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

uint64_t row_bytes(const Shape& s, DType dt) {
  uint64_t n = dtype_size(dt);
  for (size_t i = 1; i < s.size(); ++i) n *= uint64_t(s[i]);
  return n;
}

void check_same_shapes(const std::vector<const PartTensor*>& parts) {
  for (size_t p = 1; p < parts.size(); ++p)
    if (parts[p]->shape != parts[0]->shape || parts[p]->dtype != parts[0]->dtype)
      throw Error("'" + parts[0]->name + "' is " + shape_str(parts[p]->shape) + " " +
                      std::string(dtype_name(parts[p]->dtype)) + " in model part " + std::to_string(p) + " but " +
                      shape_str(parts[0]->shape) + " " + std::string(dtype_name(parts[0]->dtype)) + " in part 0",
                  parts[p]->origin);
}

// Rows [lo, hi) of the row-wise concatenation of `srcs` (each `rows` rows of `rb` bytes).
ProducerPtr rows_of(const std::vector<ProducerPtr>& srcs, uint64_t rows, uint64_t rb, uint64_t lo, uint64_t hi) {
  std::vector<ProducerPtr> out;
  for (size_t p = 0; p < srcs.size(); ++p) {
    uint64_t a = std::max(lo, p * rows), b = std::min(hi, (p + 1) * rows);
    if (a < b) out.push_back(slice(srcs[p], (a - p * rows) * rb, (b - a) * rb));
  }
  if (out.empty()) return zeros(0);
  return concat(std::move(out));
}

void need_divisible(const PartTensor& t, uint64_t full, int64_t M, const char* what) {
  if (full % uint64_t(M) != 0)
    throw Error("cannot split '" + t.name + "' into " + std::to_string(M) + " model parts: its " + what + " (" +
                std::to_string(full) + ") is not divisible by " + std::to_string(M));
}

}  // namespace

TpSplit classify(const std::string& k) {
  if (const RoleSpec* r = role_by_module(k)) return r->split;
  // Names outside OPT's table: metaseq's glue rule for NormFormer's ffn_layernorm (split like
  // fc1's output), and everything else (decoder.version, ...) replicated: kept, never dropped.
  if (has(k, "ffn_layernorm")) return TpSplit::Column;
  return TpSplit::Replicated;
}

Regrouped regroup(const std::vector<const PartTensor*>& parts, int64_t M, int64_t m) {
  check_same_shapes(parts);
  const PartTensor& t0 = *parts[0];
  const uint64_t P = parts.size();
  std::vector<ProducerPtr> srcs;
  for (const auto* p : parts) srcs.push_back(p->bytes);
  TpSplit s = classify(t0.name);
  if (s != TpSplit::Replicated && t0.shape.empty()) s = TpSplit::Replicated;
  if (s == TpSplit::Row && t0.shape.size() < 2) s = TpSplit::Column;
  const uint64_t rows = uint64_t(t0.shape.empty() ? 1 : t0.shape[0]), rb = row_bytes(t0.shape, t0.dtype);
  switch (s) {
    case TpSplit::Replicated: return {t0.shape, t0.bytes};
    case TpSplit::Vocab:
    case TpSplit::Column: {
      const uint64_t full = rows * P;
      need_divisible(t0, full, M, "dim 0");
      const uint64_t per = full / uint64_t(M);
      Shape sh = t0.shape;
      sh[0] = int64_t(per);
      return {sh, rows_of(srcs, rows, rb, uint64_t(m) * per, uint64_t(m + 1) * per)};
    }
    case TpSplit::Row: {
      const uint64_t cols = uint64_t(t0.shape[1]), full = cols * P, es = rb / cols;
      need_divisible(t0, full, M, "dim 1");
      const uint64_t per = full / uint64_t(M), lo = uint64_t(m) * per, hi = lo + per;
      std::vector<StridedPiece> pieces;
      for (uint64_t p = 0; p < P; ++p) {
        uint64_t a = std::max(lo, p * cols), b = std::min(hi, (p + 1) * cols);
        if (a < b) pieces.push_back({srcs[p], (a - p * cols) * es, rb, (b - a) * es});
      }
      Shape sh = t0.shape;
      sh[1] = int64_t(per);
      return {sh, interleave(rows, std::move(pieces))};
    }
    case TpSplit::FusedColumn: {
      if (rows % 3 != 0)
        throw Error("'" + t0.name + "' has " + std::to_string(rows) + " rows, not three equal K, V, Q blocks",
                    t0.origin);
      const uint64_t blk = rows / 3, full = blk * P;
      need_divisible(t0, full, M, "K/V/Q block rows");
      const uint64_t per = full / uint64_t(M);
      std::vector<ProducerPtr> out;
      for (uint64_t j = 0; j < 3; ++j) {
        std::vector<ProducerPtr> blocks;
        for (const auto& sp : srcs) blocks.push_back(slice(sp, j * blk * rb, blk * rb));
        out.push_back(rows_of(blocks, blk, rb, uint64_t(m) * per, uint64_t(m + 1) * per));
      }
      Shape sh = t0.shape;
      sh[0] = int64_t(3 * per);
      return {sh, concat(std::move(out))};
    }
  }
  throw Error("internal: unknown split");
}

std::vector<Regrouped> glue_qkv(const std::vector<const PartTensor*>& parts) {
  check_same_shapes(parts);
  const PartTensor& t0 = *parts[0];
  const uint64_t rows = uint64_t(t0.shape.at(0)), rb = row_bytes(t0.shape, t0.dtype);
  if (rows % 3 != 0)
    throw Error("'" + t0.name + "' has " + std::to_string(rows) + " rows, not three equal K, V, Q blocks", t0.origin);
  const uint64_t blk = rows / 3;
  std::vector<Regrouped> out;
  for (uint64_t j = 0; j < 3; ++j) {
    std::vector<ProducerPtr> blocks;
    for (const auto* p : parts) blocks.push_back(slice(p->bytes, j * blk * rb, blk * rb));
    Shape sh = t0.shape;
    sh[0] = int64_t(blk * parts.size());
    out.push_back({sh, concat(std::move(blocks))});
  }
  return out;
}

std::vector<ReplicaDiff> check_replicated(const std::vector<const PartTensor*>& parts) {
  std::vector<ReplicaDiff> out;
  if (parts.size() < 2) return out;
  check_same_shapes(parts);
  const PartTensor& t0 = *parts[0];
  const uint64_t es = dtype_size(t0.dtype), total = t0.bytes->size();
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<uint8_t> a, b;
  std::vector<float> fa, fb;
  for (size_t p = 1; p < parts.size(); ++p) {
    ReplicaDiff d{t0.name, p, 0, 0};
    for (uint64_t off = 0; off < total; off += kChunk) {
      uint64_t n = std::min(kChunk, total - off);
      a.resize(n);
      b.resize(n);
      t0.bytes->read(off, a.data(), n);
      parts[p]->bytes->read(off, b.data(), n);
      if (std::memcmp(a.data(), b.data(), n) == 0) continue;
      const uint64_t k = n / es;
      if (is_floating(t0.dtype)) {
        fa.resize(k);
        fb.resize(k);
        convert_elements(t0.dtype, a.data(), DType::F32, reinterpret_cast<uint8_t*>(fa.data()), k);
        convert_elements(t0.dtype, b.data(), DType::F32, reinterpret_cast<uint8_t*>(fb.data()), k);
        for (uint64_t i = 0; i < k; ++i)
          if (std::memcmp(a.data() + i * es, b.data() + i * es, es) != 0) {
            ++d.elements_differing;
            double diff = std::fabs(double(fa[i]) - double(fb[i]));
            if (!(diff <= d.max_abs_diff)) d.max_abs_diff = diff;  // NaN sticks
          }
      } else {
        for (uint64_t i = 0; i < k; ++i)
          d.elements_differing += std::memcmp(a.data() + i * es, b.data() + i * es, es) != 0;
      }
    }
    t0.bytes->release(0, total);
    parts[p]->bytes->release(0, total);
    if (d.elements_differing) out.push_back(d);
  }
  return out;
}

}  // namespace optforge::ckpt
