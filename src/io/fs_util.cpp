#include "io/fs_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace optforge {

std::string parent_folder(const std::string& path) {
  std::filesystem::path p(path);
  return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}

void fsync_folder(const std::string& dir, const std::string& output, bool after_rename) {
  std::string failure;
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    failure = std::string("cannot open the folder ") + dir + " to fsync it: " + std::strerror(errno);
  } else {
    if (::fsync(fd) != 0) failure = std::string("fsync of the folder ") + dir + " failed: " + std::strerror(errno);
    ::close(fd);
  }
  if (failure.empty()) return;
  if (!after_rename) throw Error(failure, output);
  std::fprintf(stderr, "optforge: warning: %s: written and in place, but %s (it may not survive a power loss)\n",
               output.c_str(), failure.c_str());
}

}  // namespace optforge
