#include "util/progress.h"

#include <unistd.h>

#include <cstdio>

#include "util/human.h"

namespace optforge {

bool Progress::stderr_is_terminal() { return ::isatty(2) == 1; }

Progress::Progress(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

Progress::~Progress() {
  if (enabled_ && !finished_) std::fputc('\n', stderr);
}

void Progress::add(uint64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock() || now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw(false);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  draw(true);
  std::fputc('\n', stderr);
  finished_ = true;
}

void Progress::draw(bool final) {
  const uint64_t done = final ? total_ : done_.load();
  const double frac = total_ ? double(done) / double(total_) : 1.0;
  const int width = 30, fill = int(frac * width + 0.5);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string bar(size_t(fill), '#');
  bar.append(size_t(width - fill), ' ');
  std::fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s ", label_.c_str(), bar.c_str(), int(frac * 100),
               human_bytes(done).c_str(), human_bytes(total_).c_str(),
               human_bytes(secs > 0 ? uint64_t(double(done) / secs) : 0).c_str());
  std::fflush(stderr);
}

}  // namespace optforge
