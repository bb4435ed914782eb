// A one-line progress bar on stderr, drawn only when stderr is a terminal. Thread-safe: any
// thread may report bytes done; the line is redrawn at most ten times a second.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace optforge {

class Progress {
 public:
  Progress(std::string label, uint64_t total, bool enabled);
  ~Progress();
  void add(uint64_t n);
  void finish();  // draws 100% and ends the line
  static bool stderr_is_terminal();

 private:
  void draw(bool final);
  std::string label_;
  uint64_t total_;
  bool enabled_;
  std::atomic<uint64_t> done_{0};
  std::mutex mutex_;
  std::chrono::steady_clock::time_point start_, last_;
  bool finished_ = false;
};

}  // namespace optforge
