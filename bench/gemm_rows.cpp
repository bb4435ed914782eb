// Where the decode-time streaming kernel (skinny_gemm) and oneDNN's matmul cross over, the
// measurement behind streaming_rows() in src/kernels/cpu/gemm.h. One thread, y = x · Wᵀ for M = 1
// .. --max-rows activation rows, W 3072 x 768 and 768 x 3072 (OPT-125m's fc1 and fc2) in f32,
// bf16, f16, int8 (per-row scales, tensor/quantize.h) and int4 (tensor/quantize_int4.h). Each
// call reads a different copy of W from a pool four times the size of this machine's usual L3
// (128 MiB), so W comes from memory as it does when a model decodes; the time of a row count is the fastest of --calls calls, which keeps out most of other processes' noise.
// Prints one table per dtype (microseconds per call, both shapes) and, per dtype, the last row
// count at which the streaming kernel takes at most 5% longer than oneDNN (both shapes summed;
// 5% is about the spread of repeated runs), beyond which oneDNN is always more than 5% faster:
// what streaming_rows should be.
// usage: bench_gemm_rows [--max-rows N] [--calls N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/onednn_gemm.h"
#include "kernels/cpu/threads.h"
#include "tensor/convert.h"
#include "tensor/quantize.h"
#include "tensor/quantize_int4.h"

using namespace optforge;

namespace {

constexpr size_t kPoolBytes = size_t(128) << 20;

struct Shape {
  int64_t n, k;  // W is [n, k]
};

// Copies of one random W stored as dt, together at least kPoolBytes (int8: quantized, with its
// row scales, which all copies share: N floats, a small fraction of the bytes read; U8: int4
// packed, with f16 group scales, likewise shared: 1/8 of the packed bytes).
struct WeightPool {
  std::vector<std::vector<uint8_t>> copies;
  std::vector<float> scale;
  std::vector<uint16_t> group_scale;
  WeightPool(DType dt, Shape s) {
    std::mt19937 g(7);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> w(size_t(s.n * s.k));
    for (auto& v : w) v = u(g);
    const size_t bytes = dt == DType::U8 ? size_t(s.n * int4_row_bytes(s.k)) : w.size() * dtype_size(dt);
    std::vector<uint8_t> stored(bytes);
    if (dt == DType::U8) {
      group_scale.resize(size_t(s.n * int4_groups(s.k)));
      for (int64_t r = 0; r < s.n; ++r)
        quantize_row_int4(w.data() + r * s.k, s.k, stored.data() + r * int4_row_bytes(s.k),
                          group_scale.data() + r * int4_groups(s.k));
    } else if (dt == DType::I8) {
      scale.resize(size_t(s.n));
      for (int64_t r = 0; r < s.n; ++r)
        scale[size_t(r)] = quantize_row_int8(w.data() + r * s.k, s.k, reinterpret_cast<int8_t*>(stored.data()) + r * s.k);
    } else {
      convert_elements(DType::F32, reinterpret_cast<const uint8_t*>(w.data()), dt, stored.data(), w.size());
    }
    const size_t count = std::max<size_t>(2, (kPoolBytes + stored.size() - 1) / stored.size());
    copies.assign(count, stored);
  }
};

// Fastest of `calls` calls of y = x · Wᵀ on M rows, each on the next copy of W, in microseconds,
// after one untimed call (oneDNN builds its kernel for a new shape on the first).
double time_us(bool streaming, const WeightPool& pool, DType dt, Shape s, int64_t M, int calls,
               const std::vector<float>& x, std::vector<float>& y) {
  double best = 1e30;
  for (int c = -1; c < calls; ++c) {
    cpu::MatrixRef w{dt, pool.copies[size_t(c + 1) % pool.copies.size()].data(), s.n, s.k};
    w.scale = pool.scale.empty() ? nullptr : pool.scale.data();
    w.group_scale = pool.group_scale.empty() ? nullptr : pool.group_scale.data();
    const auto t0 = std::chrono::steady_clock::now();
    if (streaming)
      cpu::skinny_gemm(x.data(), s.k, M, w, nullptr, y.data(), s.n, 0, s.n, true);
    else
      cpu::onednn_linear(x.data(), M, w, nullptr, y.data());
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    if (c >= 0) best = std::min(best, us);
  }
  return best;
}

std::string label(DType dt) { return dt == DType::U8 ? "int4 (u8 packed)" : std::string(dtype_name(dt)); }

// One dtype's table; returns the last row count at which streaming is at most 5% slower.
int64_t measure(DType dt, int64_t max_rows, int calls) {
  const Shape shapes[2] = {{3072, 768}, {768, 3072}};
  const WeightPool pools[2] = {WeightPool(dt, shapes[0]), WeightPool(dt, shapes[1])};
  std::vector<float> x(size_t(max_rows * 3072), 0.5f), y(size_t(max_rows * 3072));
  std::printf("\n%s weights (now streaming_rows = %lld)\n", label(dt).c_str(),
              (long long)cpu::streaming_rows_here(dt));
  std::printf("%5s | %22s | %22s | %s\n", "rows", "W 3072x768 us", "W 768x3072 us", "faster (both shapes)");
  std::printf("%5s | %10s %11s | %10s %11s |\n", "", "streaming", "oneDNN", "streaming", "oneDNN");
  int64_t last_even = 0;
  for (int64_t M = 1; M <= max_rows; ++M) {
    double st[2], dn[2];
    for (int i = 0; i < 2; ++i) {
      st[i] = time_us(true, pools[i], dt, shapes[i], M, calls, x, y);
      dn[i] = time_us(false, pools[i], dt, shapes[i], M, calls, x, y);
    }
    const bool stream_wins = st[0] + st[1] <= dn[0] + dn[1];
    if (st[0] + st[1] <= 1.05 * (dn[0] + dn[1])) last_even = M;
    std::printf("%5lld | %10.1f %11.1f | %10.1f %11.1f | %s %.2fx\n", (long long)M, st[0], dn[0], st[1], dn[1],
                stream_wins ? "streaming" : "oneDNN   ",
                stream_wins ? (dn[0] + dn[1]) / (st[0] + st[1]) : (st[0] + st[1]) / (dn[0] + dn[1]));
    std::fflush(stdout);
  }
  return last_even;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t max_rows = cpu::kSkinnyMaxRows;
  int calls = 8;
  for (int i = 1; i < argc; i += 2) {
    const bool rows = !std::strcmp(argv[i], "--max-rows"), calls_flag = !std::strcmp(argv[i], "--calls");
    char* end = nullptr;
    const long v = i + 1 < argc ? std::strtol(argv[i + 1], &end, 10) : 0;
    if ((!rows && !calls_flag) || v < 1 || *end) {
      std::fprintf(stderr, "usage: %s [--max-rows N] [--calls N] (N a positive integer)\n", argv[0]);
      return 2;
    }
    if (rows)
      max_rows = v;
    else
      calls = int(v);
  }
  cpu::set_threads(1);
  std::string summary;
  for (DType dt : {DType::F32, DType::BF16, DType::F16, DType::I8, DType::U8}) {
    const int64_t n = measure(dt, max_rows, calls);
    summary += "  " + label(dt) + ": streaming within 5% of oneDNN or faster up to " +
               std::to_string(n) + " rows (streaming_rows now " + std::to_string(cpu::streaming_rows_here(dt)) + ")\n";
  }
  std::printf("\noneDNN %s: %s\n%s", cpu::onednn_isa().c_str(), cpu::onednn_kernels().c_str(), summary.c_str());
}
