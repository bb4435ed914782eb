#include "io/temp_registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace optforge {
namespace {

// The handler only reads fixed arrays of C strings and makes plain system calls, which is
// async-signal-safe; registering takes a mutex (never held by the handler).
constexpr int kMaxTracked = 256;
std::atomic<char*> g_files[kMaxTracked];
std::atomic<char*> g_dirs[kMaxTracked];
std::mutex g_mutex;

std::atomic<char*>* table(bool is_dir) { return is_dir ? g_dirs : g_files; }

// Unlinks every entry of a flat folder (AtomicDir writes no subfolders).
void unlink_entries(const char* path) {
  int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  alignas(8) char buf[4096];
  for (;;) {
    long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name
      unsigned short reclen;
      std::memcpy(&reclen, buf + off + 16, sizeof reclen);
      const char* name = buf + off + 19;
      if (std::strcmp(name, ".") != 0 && std::strcmp(name, "..") != 0) ::unlinkat(fd, name, 0);
      off += reclen;
    }
  }
  ::close(fd);
}

// The folder and its files. Other threads run on while the handler does and may create a file in
// it meanwhile (rmdir then fails with ENOTEMPTY), so it tries again a few times.
void remove_flat_dir(const char* path) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    unlink_entries(path);
    if (::rmdir(path) == 0 || errno == ENOENT) return;
  }
}

extern "C" void on_signal(int sig) {
  for (auto& slot : g_files)
    if (char* s = slot.load()) ::unlink(s);
  for (auto& slot : g_dirs)
    if (char* s = slot.load()) remove_flat_dir(s);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void track_temp(const std::string& path, bool is_dir) {
  char* s = ::strdup(path.c_str());
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kMaxTracked; ++i) {
    char* expected = nullptr;
    if (table(is_dir)[i].compare_exchange_strong(expected, s)) return;
  }
  std::free(s);
}

void untrack_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (bool is_dir : {false, true})
    for (int i = 0; i < kMaxTracked; ++i) {
      char* s = table(is_dir)[i].load();
      if (s && path == s) {
        table(is_dir)[i].store(nullptr);
        std::free(s);
        return;
      }
    }
}

void install_cleanup_on_signal() {
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  ::signal(SIGHUP, on_signal);
}

}  // namespace optforge
