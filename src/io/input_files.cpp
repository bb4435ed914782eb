#include "io/input_files.h"

#include <sys/stat.h>

#include <map>
#include <mutex>
#include <utility>

namespace optforge {
namespace {

std::mutex mu;
std::map<std::pair<dev_t, ino_t>, int>& inputs() {  // identity -> open mappings
  static std::map<std::pair<dev_t, ino_t>, int> m;
  return m;
}

}  // namespace

void note_input_file(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> lock(mu);
  ++inputs()[{dev, ino}];
}

void release_input_file(dev_t dev, ino_t ino) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = inputs().find({dev, ino});
  if (it != inputs().end() && --it->second == 0) inputs().erase(it);
}

bool is_input_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  std::lock_guard<std::mutex> lock(mu);
  return inputs().count({st.st_dev, st.st_ino}) > 0;
}

}  // namespace optforge
