// The CPU kernels' threads. One pool for the process: OpenMP's (GNU libgomp), the runtime Debian's
// oneDNN is built on, so our kernels and oneDNN's matrix products run on the same worker threads
// one after the other, with the same thread count, and never oversubscribe the cores. libgomp's
// workers spin briefly between parallel regions before sleeping, which decode needs: it calls
// parallel_for a few hundred times per token.
#pragma once

#include <cstdint>
#include <functional>

namespace optforge::cpu {

// Sets the number of threads for our kernels and oneDNN's; 0 means one per hardware thread.
void set_threads(int n);
int threads();

// Makes the calling thread's OpenMP team size the pool's: OpenMP keeps the thread count per
// calling thread, so a model run from a server's worker thread must set it there too. Called
// before every oneDNN call (cheap).
void use_pool_threads();

// Calls fn(begin, end) over [0, n) in chunks of at least `grain`, on every thread including the
// caller's, and returns when all chunks are done. fn must not throw. Nested calls (from inside
// fn) run on the calling thread alone.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace optforge::cpu
