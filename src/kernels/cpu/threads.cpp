#include "kernels/cpu/threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace optforge::cpu {
namespace {

std::atomic<int> pool_size{0};

int hardware_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

}  // namespace

void set_threads(int n) {
  if (n <= 0) n = hardware_threads();
  pool_size.store(n);
  omp_set_num_threads(n);
}

int threads() {
  int n = pool_size.load();
  if (n == 0) {
    set_threads(0);
    n = pool_size.load();
  }
  return n;
}

void use_pool_threads() {
  const int n = threads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int T = threads();
  grain = std::max<int64_t>(1, grain);
  if (T == 1 || n <= grain || omp_in_parallel()) return fn(0, n);
  // A few chunks per thread balance uneven work without much contention on the counter.
  const int64_t chunk = std::max(grain, (n + 4 * T - 1) / (4 * T));
  const int team = int(std::min<int64_t>(T, (n + chunk - 1) / chunk));
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(team)
  for (;;) {
    const int64_t b = next.fetch_add(chunk);
    if (b >= n) break;
    fn(b, std::min(n, b + chunk));
  }
}

}  // namespace optforge::cpu
