// The CPU backend: matrices stay where the checkpoint's mmap put them, in their stored dtype;
// vectors (biases, norms) are converted to f32 once, since every row of a batch reads them.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/onednn_gemm.h"
#include "kernels/cpu/threads.h"
#include "model/backend.h"
#include "model/kv_cache.h"
#include "model/step.h"
#include "tensor/convert.h"
#include "tensor/quantize_int4.h"
#include "util/error.h"

namespace optforge {
namespace {

struct CpuWeight : BackendWeight {
  Tensor tensor;           // keeps the mapping alive
  Tensor scale;            // int8 matrices: the per-row scales matrix.scale points into
  cpu::MatrixRef matrix;   // 2-D weights, viewed as stored
  std::vector<float> f32;  // 1-D weights, converted
};

const CpuWeight& cw(const Weight& w) { return static_cast<const CpuWeight&>(*w); }

class CpuBackend final : public Backend {
 public:
  CpuBackend(int threads, DType kv_dtype) : kv_dtype_(kv_dtype) {
    if (kv_dtype != DType::F32 && kv_dtype != DType::F16 && kv_dtype != DType::BF16)
      throw Error("the KV cache dtype must be f32, f16 or bf16, not " + std::string(dtype_name(kv_dtype)));
    cpu::set_threads(threads);
  }
  // Also names the kernels: oneDNN's ISA and the matmul implementations it chose so far.
  std::string name() const override {
    return "cpu (" + std::to_string(cpu::threads()) + " threads, KV cache " + std::string(dtype_name(kv_dtype_)) +
           ", oneDNN " + cpu::onednn_isa() + ": " + cpu::onednn_kernels() + ")";
  }

  DType kv_dtype() const override { return kv_dtype_; }

  KvTensor alloc_kv(int64_t rows, int64_t cols) override {
    const size_t bytes = size_t(std::max<int64_t>(1, rows * cols)) * dtype_size(kv_dtype_);
    return KvTensor{std::shared_ptr<uint8_t[]>(new uint8_t[bytes]), kv_dtype_, rows, cols};
  }

  void copy_kv_rows(const KvTensor& src, int64_t src_row, KvTensor& dst, int64_t dst_row, int64_t rows) override {
    std::memmove(dst.row(dst_row), src.row(src_row), size_t(rows * src.cols) * dtype_size(src.dtype));
  }

  Weight upload(const Tensor& t, const Tensor* row_scale) override {
    auto w = std::make_shared<CpuWeight>();
    w->shape = t.shape;
    w->tensor = t.is_contiguous() ? t : t.contiguous();
    if (t.dtype == DType::I8) {
      if (t.dim() != 2 || !row_scale || row_scale->dtype != DType::F32 || row_scale->shape != Shape{t.shape[0]})
        throw Error("an int8 weight " + t.shape_string() + " needs f32 scales [" +
                    (t.dim() ? std::to_string(t.shape[0]) : std::string("?")) + "]");
      w->scale = row_scale->is_contiguous() ? *row_scale : row_scale->contiguous();
    }
    if (t.dtype == DType::U8) {  // int4 packed [N, K / 2]: K is even (tensor/quantize_int4.h)
      const Shape want{t.dim() ? t.shape[0] : 0, int4_groups(t.dim() == 2 ? 2 * t.shape[1] : 0)};
      if (t.dim() != 2 || !row_scale || row_scale->dtype != DType::F16 || row_scale->shape != want)
        throw Error("an int4 weight " + t.shape_string() + " needs f16 group scales [" + std::to_string(want[0]) +
                    ", " + std::to_string(want[1]) + "]");
      w->scale = row_scale->is_contiguous() ? *row_scale : row_scale->contiguous();
    }
    if (t.dim() == 2) {
      w->matrix = {t.dtype, w->tensor.data(), t.shape[0], t.shape[1]};
      if (t.dtype == DType::I8) w->matrix.scale = reinterpret_cast<const float*>(w->scale.data());
      if (t.dtype == DType::U8) {
        w->shape[1] = w->matrix.cols = 2 * t.shape[1];  // the logical [N, K]
        w->matrix.group_scale = reinterpret_cast<const uint16_t*>(w->scale.data());
      }
    } else {
      w->f32.resize(size_t(t.numel()));
      convert_elements(t.dtype, w->tensor.data(), DType::F32, reinterpret_cast<uint8_t*>(w->f32.data()),
                       uint64_t(t.numel()));
    }
    return w;
  }

  Act alloc(int64_t rows, int64_t cols) override {
    return Act{std::shared_ptr<float[]>(new float[size_t(std::max<int64_t>(1, rows * cols))]), rows, cols};
  }

  void read(const Act& x, float* host) override { std::memcpy(host, x.data(), size_t(x.rows * x.cols) * 4); }

  void gather_rows(const Act& x, const std::vector<int64_t>& rows, Act& out) override {
    for (size_t i = 0; i < rows.size(); ++i)
      std::memcpy(out.data() + int64_t(i) * x.cols, x.data() + rows[i] * x.cols, size_t(x.cols) * 4);
  }

  void embedding(const Weight& table, const std::vector<int32_t>& ids, Act& out) override {
    const cpu::MatrixRef& m = cw(table).matrix;
    for (size_t i = 0; i < ids.size(); ++i) cpu::load_row(m, check_id(m, ids[i]), out.data() + int64_t(i) * m.cols);
  }

  void add_embedding(const Weight& table, const std::vector<int32_t>& ids, Act& x) override {
    const cpu::MatrixRef& m = cw(table).matrix;
    std::vector<float> row(size_t(m.cols));
    for (size_t i = 0; i < ids.size(); ++i) {
      cpu::load_row(m, check_id(m, ids[i]), row.data());
      float* xr = x.data() + int64_t(i) * m.cols;
      for (int64_t c = 0; c < m.cols; ++c) xr[c] += row[size_t(c)];
    }
  }

  void linear(const Act& x, const Weight& w, const Weight* bias, Act& y) override {
    cpu::linear(x.data(), x.rows, cw(w).matrix, bias ? cw(*bias).f32.data() : nullptr, y.data());
  }

  void layer_norm(const Act& x, const Weight& g, const Weight& b, float eps, Act& y) override {
    cpu::layer_norm(x.data(), x.rows, x.cols, g ? cw(g).f32.data() : nullptr, b ? cw(b).f32.data() : nullptr, eps,
                    y.data());
  }

  void activation(Act& x, Activation a) override { cpu::activation(x.data(), x.rows * x.cols, a); }

  void add(Act& x, const Act& y) override {
    float* p = x.data();
    const float* q = y.data();
    for (int64_t i = 0, n = x.rows * x.cols; i < n; ++i) p[i] += q[i];
  }

  void scale(Act& x, float s) override {
    float* p = x.data();
    for (int64_t i = 0, n = x.rows * x.cols; i < n; ++i) p[i] *= s;
  }

  void attention(const Act& q, const Act& k, const Act& v, KvCache& cache, int64_t layer, const Step& step,
                 Act& out) override {
    const int64_t H = cache.heads(), hd = cache.head_dim(), E = H * hd;
    const int64_t units = int64_t(step.seqs.size()) * H;
    cpu::parallel_for(units, 1, [&](int64_t u0, int64_t u1) {
      std::vector<float> scratch;
      for (int64_t u = u0; u < u1; ++u) {
        const Step::Seq& s = step.seqs[size_t(u / H)];
        const int64_t h = u % H;
        const cpu::KvRows K = cache.keys(layer, s.seq, h), V = cache.values(layer, s.seq, h);
        for (int64_t i = 0; i < s.rows; ++i) {  // append this step's keys and values (begin() gave the blocks)
          store_kv(k.data() + (s.row0 + i) * E + h * hd, const_cast<uint8_t*>(K.row(s.start + i)), hd);
          store_kv(v.data() + (s.row0 + i) * E + h * hd, const_cast<uint8_t*>(V.row(s.start + i)), hd);
        }
        const float* qh = q.data() + s.row0 * E + h * hd;
        float* oh = out.data() + s.row0 * E + h * hd;
        if (s.rows > 1) {  // a prompt: blocked, online softmax
          cpu::attend_head_blocked(qh, E, s.rows, K, V, kv_dtype_, cache.key_mask(s.seq), s.start, hd, oh, E);
          continue;
        }
        scratch.resize(size_t(s.start + s.rows));
        cpu::attend_head(qh, E, s.rows, K, V, kv_dtype_, cache.key_mask(s.seq), s.start, hd, oh, E, scratch.data());
      }
    });
  }

 private:
  // n f32 values into the cache's dtype (round to nearest even, as torch's .to(dtype)).
  void store_kv(const float* src, uint8_t* dst, int64_t n) const {
    convert_elements(DType::F32, reinterpret_cast<const uint8_t*>(src), kv_dtype_, dst, uint64_t(n));
  }

  DType kv_dtype_;

  static int64_t check_id(const cpu::MatrixRef& m, int32_t id) {
    if (id < 0 || id >= m.rows)
      throw Error("token id " + std::to_string(id) + " is outside the embedding table (" + std::to_string(m.rows) +
                  " rows)");
    return id;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads, DType kv_dtype) {
  return std::make_unique<CpuBackend>(threads, kv_dtype);
}

}  // namespace optforge
