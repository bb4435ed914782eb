// The CPU kernels' worker threads. One pool for the process: decode calls it a few hundred times
// per token, so workers spin briefly before sleeping (a wake-up through a condition variable
// costs tens of microseconds, comparable to a whole small GEMV).
#pragma once

#include <cstdint>
#include <functional>

namespace optforge::cpu {

// Sets the number of threads (ours and OpenBLAS's); 0 means one per hardware thread.
void set_threads(int n);
int threads();

// Calls fn(begin, end) over [0, n) in chunks of at least `grain`, on every thread including the
// caller's, and returns when all chunks are done. fn must not throw.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace optforge::cpu
