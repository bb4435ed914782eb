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

  virtual Weight upload(const Tensor& t) = 0;
  virtual Act alloc(int64_t rows, int64_t cols) = 0;
  virtual void read(const Act& x, float* host) = 0;  // x's rows*cols values to host memory
  virtual void copy_rows(const Act& src, int64_t src_row, Act& dst, int64_t dst_row, int64_t rows) = 0;
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
  virtual void add(Act& x, const Act& y) = 0;  // x += y
  virtual void scale(Act& x, float s) = 0;
  // Appends this step's k, v rows to the cache's layer, then causal attention of q over each
  // sequence's cache: out [rows, E] with heads concatenated (feature = head * head_dim + j).
  virtual void attention(const Act& q, const Act& k, const Act& v, KvCache& cache, int64_t layer, const Step& step,
                         Act& out) = 0;
};

// The CPU backend (OpenBLAS + our kernels), using `threads` threads (0: all).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace optforge
