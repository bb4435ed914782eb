// The CPU kernels' worker threads. One pool for the process and for everything: our kernels and
// oneDNN's matrix products, which onednn_gemm.cpp splits into tiles over this pool and runs with
// an OpenMP team of one, so oneDNN never starts threads of its own and nothing oversubscribes the
// cores. Decode calls the pool a few hundred times per token, so workers spin briefly before
// sleeping (a wake-up through a condition variable costs tens of microseconds, comparable to a
// whole small GEMV), and a caller waiting for them yields its core (robust on a loaded machine).
#pragma once

#include <cstdint>
#include <functional>

namespace optforge::cpu {

// Sets the number of threads; 0 means one per hardware thread.
void set_threads(int n);
int threads();

// Calls fn(begin, end) over [0, n) in chunks of at least `grain`, on every thread including the
// caller's, and returns when all chunks are done. fn must not throw.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace optforge::cpu
