#include "kernels/cpu/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace optforge::cpu {
namespace {

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return int(workers_.size()) + 1; }

  void run(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      busy_.store(int(workers_.size()));
      ++generation_;
    }
    cv_.notify_all();
    drain();
    // Workers each decrement busy_ once they find no chunk left.
    while (busy_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

 private:
  void drain() {
    for (;;) {
      int64_t b = next_.fetch_add(chunk_);
      if (b >= n_) return;
      (*fn_)(b, std::min(n_, b + chunk_));
    }
  }
  void work() {
    uint64_t seen = 0;
    for (;;) {
      // Spin a little first: the next kernel call usually comes within microseconds.
      for (int i = 0; i < 2000 && generation_.load(std::memory_order_acquire) == seen; ++i) spin_pause();
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (stop_) return;
      }
      drain();
      busy_.fetch_sub(1, std::memory_order_release);
    }
  }
  static void spin_pause() {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::atomic<int> busy_{0};
};

std::unique_ptr<Pool>& pool() {
  static std::unique_ptr<Pool> p;
  return p;
}
std::mutex pool_mu;

Pool& get_pool() {
  std::lock_guard<std::mutex> lock(pool_mu);
  if (!pool()) {
    int n = int(std::max(1u, std::thread::hardware_concurrency()));
    pool() = std::make_unique<Pool>(n);
  }
  return *pool();
}

}  // namespace

void set_threads(int n) {
  if (n <= 0) n = int(std::max(1u, std::thread::hardware_concurrency()));
  std::lock_guard<std::mutex> lock(pool_mu);
  if (pool() && pool()->size() == n) return;
  pool().reset();
  pool() = std::make_unique<Pool>(n);
}

int threads() { return get_pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  Pool& p = get_pool();
  grain = std::max<int64_t>(1, grain);
  if (p.size() == 1 || n <= grain) return fn(0, n);
  // A few chunks per thread balance uneven work without much contention on the counter.
  int64_t chunk = std::max(grain, (n + 4 * p.size() - 1) / (4 * p.size()));
  p.run(n, chunk, fn);
}

}  // namespace optforge::cpu
