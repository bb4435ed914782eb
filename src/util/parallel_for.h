// Runs independent units of work on a fixed number of threads. The first exception stops the
// remaining units (those already running finish) and is rethrown to the caller.
#pragma once

#include <cstddef>
#include <functional>

namespace optforge {

// Calls fn(i) for every i in [0, n), on up to `threads` threads (the caller's thread is one of
// them). Units are taken in index order.
void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn);

// The number of hardware threads (at least 1).
int hardware_threads();

}  // namespace optforge
