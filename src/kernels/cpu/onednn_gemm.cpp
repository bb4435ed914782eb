#include "kernels/cpu/onednn_gemm.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <set>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/threads.h"
#include "util/error.h"

namespace optforge::cpu {
namespace {

using dnnl::memory;
using Dt = memory::data_type;

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// One primitive per shape: building one takes far longer than running a small product.
struct Key {
  int64_t M, N, K;
  Dt src;
  bool bias, accumulate;  // accumulate: y += product (oneDNN's sum post-op) instead of y =
  auto tie() const { return std::tie(M, N, K, src, bias, accumulate); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

std::mutex cache_mu;
std::map<Key, dnnl::matmul> cache;
std::set<std::string> chosen;  // "f32: brg:avx512_core", for onednn_kernels()

memory::desc src_desc(const Key& k) { return {{k.M, k.K}, k.src, memory::format_tag::ab}; }
// W is [N, K] row-major: as matmul's [K, N] weights that is the transposed layout "ba".
memory::desc wei_desc(const Key& k) { return {{k.K, k.N}, k.src, memory::format_tag::ba}; }
memory::desc dst_desc(const Key& k) { return {{k.M, k.N}, Dt::f32, memory::format_tag::ab}; }
memory::desc bias_desc(const Key& k) { return {{1, k.N}, Dt::f32, memory::format_tag::ab}; }

dnnl::matmul build(const Key& k) {
  dnnl::primitive_attr attr;
  if (k.accumulate) {
    dnnl::post_ops po;
    po.append_sum(1.0f);
    attr.set_post_ops(po);
  }
  auto d = k.bias ? dnnl::matmul::desc(src_desc(k), wei_desc(k), bias_desc(k), dst_desc(k))
                  : dnnl::matmul::desc(src_desc(k), wei_desc(k), dst_desc(k));
  dnnl::matmul::primitive_desc pd(d, attr, engine());
  chosen.insert(std::string(k.src == Dt::bf16 ? "bf16" : "f32") + ": " + pd.impl_info_str());
  return dnnl::matmul(pd);
}

const dnnl::matmul& primitive(const Key& k) {
  std::lock_guard<std::mutex> lock(cache_mu);
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 512) cache.clear();  // prompts of many lengths: bound the memory
  try {
    return cache.emplace(k, build(k)).first->second;
  } catch (const dnnl::error& e) {
    throw Error("oneDNN has no matmul kernel for [" + std::to_string(k.M) + ", " + std::to_string(k.K) + "] x [" +
                std::to_string(k.K) + ", " + std::to_string(k.N) + "]: " + e.what());
  }
}

// y (+)= x · Wᵀ (+ bias) for one product; x and W both of dtype k.src, y f32 with row stride ldy.
void run(const Key& k, const void* x, const void* w, const float* bias, float* y, int64_t ldy) {
  use_pool_threads();
  const dnnl::matmul& p = primitive(k);
  thread_local dnnl::stream stream(engine());
  memory::desc dd({k.M, k.N}, Dt::f32, memory::dims{ldy, 1});
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(src_desc(k), engine(), const_cast<void*>(x))},
      {DNNL_ARG_WEIGHTS, memory(wei_desc(k), engine(), const_cast<void*>(w))},
      {DNNL_ARG_DST, memory(dd, engine(), y)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(bias_desc(k), engine(), const_cast<float*>(bias)));
  p.execute(stream, args);
  stream.wait();
}

bool native_bf16() {
  static const bool yes = [] {
    const auto isa = unsigned(dnnl::get_effective_cpu_isa());
    const auto bf16 = unsigned(dnnl::cpu_isa::avx512_core_bf16);
    return (isa & bf16) == bf16;  // the ISA values nest: AMX includes AVX-512 BF16
  }();
  return yes;
}

// x split into two bf16 matrices: hi = round(x), lo = round(x - hi).
void split_bf16(const float* x, int64_t n, uint16_t* hi, uint16_t* lo) {
  parallel_for(n, 4096, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      hi[i] = f32_to_bf16(x[i]);
      lo[i] = f32_to_bf16(x[i] - bf16_to_f32(hi[i]));
    }
  });
}

void linear_bf16(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y) {
  const int64_t N = w.rows, K = w.cols;
  thread_local std::vector<uint16_t> buf;
  buf.resize(size_t(2 * M * K));
  uint16_t* hi = buf.data();
  uint16_t* lo = hi + M * K;
  split_bf16(x, M * K, hi, lo);
  run({M, N, K, Dt::bf16, bias != nullptr, false}, hi, w.data, bias, y, N);
  run({M, N, K, Dt::bf16, false, true}, lo, w.data, nullptr, y, N);
}

// Rows of W converted per block: about 16 MiB of f32 whatever the matrix.
int64_t block_rows(int64_t K) { return std::max<int64_t>(64, (int64_t(4) << 20) / std::max<int64_t>(1, K)); }

void linear_converted(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y) {
  const int64_t N = w.rows, K = w.cols;
  thread_local std::vector<float> buf;
  const int64_t rows = std::min(N, block_rows(K));
  buf.resize(size_t(rows * K));
  float* block = buf.data();  // buf is thread_local: the workers must see the caller's
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t nb = std::min(rows, N - n0);
    parallel_for(nb, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) load_row(w, n0 + r, block + r * K);
    });
    run({M, nb, K, Dt::f32, bias != nullptr, false}, x, block, bias ? bias + n0 : nullptr, y + n0, N);
  }
}

}  // namespace

void onednn_linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y) {
  if (w.dtype == DType::F32) return run({M, w.rows, w.cols, Dt::f32, bias != nullptr, false}, x, w.data, bias, y, w.rows);
  if (w.dtype == DType::BF16 && native_bf16()) return linear_bf16(x, M, w, bias, y);
  linear_converted(x, M, w, bias, y);
}

std::string onednn_kernels() {
  std::lock_guard<std::mutex> lock(cache_mu);
  std::string s;
  for (const std::string& c : chosen) s += (s.empty() ? "" : "; ") + c;
  return s.empty() ? "none yet" : s;
}

std::string onednn_isa() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    default: return "other";
  }
}

}  // namespace optforge::cpu
