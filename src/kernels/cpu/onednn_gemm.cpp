#include "kernels/cpu/onednn_gemm.h"

#include <omp.h>

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
  int64_t M, N, K, ldy;  // ldy: y's row stride (a tile of a wider output)
  Dt src;
  bool bias, accumulate;  // accumulate: y += product (oneDNN's sum post-op) instead of y =
  auto tie() const { return std::tie(M, N, K, ldy, src, bias, accumulate); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

// Scratchpads are ours (scratchpad_mode::user), one per calling thread: with the library's,
// Debian's build (no DNNL_ENABLE_CONCURRENT_EXEC) shares one between threads, and tiles run
// concurrently on our pool.
struct Prim {
  dnnl::matmul matmul;
  memory::desc scratchpad;
};

std::mutex cache_mu;
std::map<Key, Prim> cache;
std::set<std::string> chosen;  // "f32: brg:avx512_core", for onednn_kernels()

memory::desc src_desc(const Key& k) { return {{k.M, k.K}, k.src, memory::format_tag::ab}; }
// W is [N, K] row-major: as matmul's [K, N] weights that is the transposed layout "ba".
memory::desc wei_desc(const Key& k) { return {{k.K, k.N}, k.src, memory::format_tag::ba}; }
memory::desc dst_desc(const Key& k) { return {{k.M, k.N}, Dt::f32, memory::dims{k.ldy, 1}}; }
memory::desc bias_desc(const Key& k) { return {{1, k.N}, Dt::f32, memory::format_tag::ab}; }

Prim build(const Key& k) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (k.accumulate) {
    dnnl::post_ops po;
    po.append_sum(1.0f);
    attr.set_post_ops(po);
  }
  auto d = k.bias ? dnnl::matmul::desc(src_desc(k), wei_desc(k), bias_desc(k), dst_desc(k))
                  : dnnl::matmul::desc(src_desc(k), wei_desc(k), dst_desc(k));
  dnnl::matmul::primitive_desc pd(d, attr, engine());
  chosen.insert(std::string(k.src == Dt::bf16 ? "bf16" : "f32") + ": " + pd.impl_info_str());
  return {dnnl::matmul(pd), pd.scratchpad_desc()};
}

// Copied out under the lock: another thread may clear the cache while this one runs the copy.
Prim primitive(const Key& k) {
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

// y (+)= x · Wᵀ (+ bias) for one tile, on the calling thread (oneDNN's OpenMP team of one);
// x and W both of dtype k.src, contiguous rows; y f32 with row stride k.ldy.
void run_tile(const Key& k, const void* x, const void* w, const float* bias, float* y) {
  if (omp_get_max_threads() != 1) omp_set_num_threads(1);  // per calling thread in OpenMP
  const Prim p = primitive(k);
  thread_local dnnl::stream stream(engine());
  thread_local std::vector<uint8_t> scratch;
  scratch.resize(std::max<size_t>(1, p.scratchpad.get_size()));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(src_desc(k), engine(), const_cast<void*>(x))},
                                       {DNNL_ARG_WEIGHTS, memory(wei_desc(k), engine(), const_cast<void*>(w))},
                                       {DNNL_ARG_DST, memory(dst_desc(k), engine(), y)},
                                       {DNNL_ARG_SCRATCHPAD, memory(p.scratchpad, engine(), scratch.data())}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(bias_desc(k), engine(), const_cast<float*>(bias)));
  p.matmul.execute(stream, args);
  stream.wait();
}

// y[M, N] (row stride ldy) (+)= x[M, K] · W[N, K]ᵀ (+ bias), split into tiles over our thread
// pool: one pool for everything, oneDNN never starts threads of its own. Tiles of up to 128 x 256
// keep W's slice in cache across a tile's rows, and shrink until every thread has two.
void run(Dt dt, int64_t M, int64_t N, int64_t K, int64_t ldy, const void* x, const void* w, const float* bias, float* y,
         bool accumulate) {
  const int64_t esize = dt == Dt::f32 ? 4 : 2, T = threads();
  int64_t mb = std::min<int64_t>(M, 128), nb = std::min<int64_t>(N, 256);
  auto units = [&] { return ((M + mb - 1) / mb) * ((N + nb - 1) / nb); };
  while (units() < 2 * T && nb > 64) nb /= 2;
  while (units() < 2 * T && mb > 32) mb /= 2;
  const int64_t n_tiles = (N + nb - 1) / nb;
  parallel_for(units(), 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t m0 = (u / n_tiles) * mb, n0 = (u % n_tiles) * nb;
      const Key k{std::min(mb, M - m0), std::min(nb, N - n0), K, ldy, dt, bias != nullptr, accumulate};
      run_tile(k, static_cast<const uint8_t*>(x) + m0 * K * esize, static_cast<const uint8_t*>(w) + n0 * K * esize,
               bias ? bias + n0 : nullptr, y + m0 * ldy + n0);
    }
  });
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
  run(Dt::bf16, M, N, K, N, hi, w.data, bias, y, false);
  run(Dt::bf16, M, N, K, N, lo, w.data, nullptr, y, true);
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
    run(Dt::f32, M, nb, K, N, x, block, bias ? bias + n0 : nullptr, y + n0, false);
  }
}

}  // namespace

void onednn_linear(const float* x, int64_t M, const MatrixRef& w, const float* bias, float* y) {
  if (w.dtype == DType::F32) return run(Dt::f32, M, w.rows, w.cols, w.rows, x, w.data, bias, y, false);
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
