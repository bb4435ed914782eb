// The operations the OPT forward pass needs, behind an interface so that a CUDA backend can
// follow without touching the model code. The model only composes these calls; it never reads
// activation memory itself (logits come back through `read`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "opt/config.h"
#include "tensor/tensor.h"

namespace optforge {

class KvCache;
struct Step;

// An f32 activation matrix [rows, cols] in memory the backend owns (host RAM for the CPU
// backend; device memory for a GPU one). Copies share the memory.
struct Act {
  std::shared_ptr<float[]> mem;
  int64_t rows = 0, cols = 0;
  float* data() const { return mem.get(); }
};

// One layer's keys or values in the KV cache: [rows, cols] stored as `dtype` (f32, f16 or bf16),
// in memory the backend owns. Copies share the memory.
struct KvTensor {
  std::shared_ptr<uint8_t[]> mem;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  uint8_t* row(int64_t r) const { return mem.get() + r * cols * int64_t(dtype_size(dtype)); }
};

// A weight as the backend keeps it (the CPU backend: a view of the mmapped tensor).
struct BackendWeight {
  Shape shape;  // as in the checkpoint: [out, in] for a matrix
  virtual ~BackendWeight() = default;
};
using Weight = std::shared_ptr<const BackendWeight>;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // t: a weight as loaded (f32/f16/bf16; an int8 matrix [N, K] with row_scale f32 [N]: the weight
  // is q * scale, model/quantize.h). Throws optforge::Error for an int8 tensor without scales.
  virtual Weight upload(const Tensor& t, const Tensor* row_scale = nullptr) = 0;
  virtual Act alloc(int64_t rows, int64_t cols) = 0;
  virtual void read(const Act& x, float* host) = 0;  // x's rows*cols values to host memory
  // The dtype KV caches are stored in (fixed when the backend is made).
  virtual DType kv_dtype() const = 0;
  virtual KvTensor alloc_kv(int64_t rows, int64_t cols) = 0;
  virtual void copy_kv_rows(const KvTensor& src, int64_t src_row, KvTensor& dst, int64_t dst_row, int64_t rows) = 0;
  // out[i] = x[rows[i]]
  virtual void gather_rows(const Act& x, const std::vector<int64_t>& rows, Act& out) = 0;

  // out[i] = table[ids[i]]
  virtual void embedding(const Weight& table, const std::vector<int32_t>& ids, Act& out) = 0;
  // x[i] += table[ids[i]]
  virtual void add_embedding(const Weight& table, const std::vector<int32_t>& ids, Act& x) = 0;
  // y = x · wᵀ (+ bias)
  virtual void linear(const Act& x, const Weight& w, const Weight* bias, Act& y) = 0;
  // gamma/beta null: no elementwise affine (layer_norm_elementwise_affine false)
  virtual void layer_norm(const Act& x, const Weight& gamma, const Weight& beta, float eps, Act& y) = 0;
  virtual void activation(Act& x, Activation a) = 0;  // in place
  virtual void add(Act& x, const Act& y) = 0;         // x += y
  virtual void scale(Act& x, float s) = 0;
  // Appends this step's k, v rows to the cache's layer, then causal attention of q over each
  // sequence's cache: out [rows, E] with heads concatenated (feature = head * head_dim + j).
  virtual void attention(const Act& q, const Act& k, const Act& v, KvCache& cache, int64_t layer, const Step& step,
                         Act& out) = 0;
};

// The CPU backend (oneDNN + our kernels), using `threads` threads (0: all), keeping KV caches in
// kv_dtype (F32, F16 or BF16; attention accumulates in f32 whatever it is). Throws
// optforge::Error for another kv_dtype.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0, DType kv_dtype = DType::F16);

}  // namespace optforge
