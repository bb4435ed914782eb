#include "serve/job.h"

namespace optforge::serve {

void EventSink::push(JobEvent e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    q_.push_back(std::move(e));
  }
  cv_.notify_one();
}

std::vector<JobEvent> EventSink::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !q_.empty(); });
  std::vector<JobEvent> out(std::make_move_iterator(q_.begin()), std::make_move_iterator(q_.end()));
  q_.clear();
  return out;
}

}  // namespace optforge::serve
