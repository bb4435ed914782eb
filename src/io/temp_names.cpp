#include "io/temp_names.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>
#include <vector>

#include "io/fs_util.h"

namespace fs = std::filesystem;

namespace optforge {
namespace {

struct Leftover {
  std::string path;        // the temporary (file or folder)
  std::string final_name;  // the output it was meant to become (a name, no folder)
  long pid = 0;            // the process that wrote it
  bool stale = false;      // that process is gone: safe to remove
};

constexpr const char* kTag = ".tmp-optforge-";
constexpr const char* kLegacyTag = ".tmp-";

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Seconds since the epoch at which process `pid` started, or -1 if unknown.
double process_start_time(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return -1;
  auto close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 2));
  std::string f;
  unsigned long long start_ticks = 0;
  for (int i = 3; i <= 22 && fields >> f; ++i)  // field 22: starttime, clock ticks after boot
    if (i == 22) start_ticks = std::stoull(f);
  std::ifstream sys("/proc/stat");
  double boot = -1;
  for (std::string key; sys >> key;) {
    if (key == "btime") {
      sys >> boot;
      break;
    }
    std::getline(sys, key);
  }
  if (boot < 0 || start_ticks == 0) return -1;
  return boot + double(start_ticks) / double(::sysconf(_SC_CLK_TCK));
}

// Whether the process that wrote `path` (as `pid`) can no longer be writing it.
bool writer_is_gone(long pid, const std::string& path) {
  if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return true;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return false;
  // A live process started after the temporary was last written is a reused PID, not its writer.
  double started = process_start_time(pid);
  return started > 0 && started > double(st.st_mtim.tv_sec) + 1.0;
}

// Temporaries in `dir` left by other processes (this process's own are skipped); with
// `final_name` non-empty, only those meant to become that name.
std::vector<Leftover> find_leftovers(const std::string& dir, const std::string& final_name = "") {
  std::vector<Leftover> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    Leftover l;
    if (!parse_temp_name(it->path().filename().string(), &l.final_name, &l.pid)) continue;
    if (l.pid == ::getpid() || (!final_name.empty() && l.final_name != final_name)) continue;
    l.path = it->path().string();
    l.stale = writer_is_gone(l.pid, l.path);
    out.push_back(std::move(l));
  }
  return out;
}

void clean(const std::vector<Leftover>& found) {
  for (const Leftover& l : found) {
    if (!l.stale) {
      std::fprintf(
          stderr,
          "optforge: warning: %s is the temporary of a run that may still be writing it (process %ld); left alone\n",
          l.path.c_str(), l.pid);
      continue;
    }
    std::error_code ec;
    fs::remove_all(l.path, ec);
    if (ec)
      std::fprintf(stderr, "optforge: warning: cannot remove %s, left by an interrupted run: %s\n", l.path.c_str(),
                   ec.message().c_str());
    else
      std::fprintf(stderr, "optforge: removed %s, left by an interrupted run (process %ld)\n", l.path.c_str(), l.pid);
  }
}

}  // namespace

std::string temp_path_for(const std::string& final_path) {
  static std::random_device rd;
  fs::path p(final_path);
  std::string name = ".";  // appended piecewise: GCC 12 misreports a chain of + as overlapping
  name += p.filename().string();
  name += kTag;
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(rd() % 1000000);
  return (fs::path(parent_folder(final_path)) / name).string();
}

bool parse_temp_name(const std::string& name, std::string* final_name, long* pid) {
  if (name.size() < 2 || name[0] != '.') return false;
  auto dash = name.rfind('-');
  if (dash == std::string::npos || !all_digits(name.substr(dash + 1))) return false;
  std::string head = name.substr(0, dash);  // ".X.tmp-optforge-<pid>" or ".X.tmp-<pid>"
  auto pid_dash = head.rfind('-');
  if (pid_dash == std::string::npos || !all_digits(head.substr(pid_dash + 1))) return false;
  std::string stem = head.substr(0, pid_dash + 1);
  size_t tag = std::string::npos;
  for (const char* t : {kTag, kLegacyTag}) {
    std::string ts(t);
    if (stem.size() > ts.size() + 1 && stem.compare(stem.size() - ts.size(), ts.size(), ts) == 0) {
      tag = stem.size() - ts.size();
      break;
    }
  }
  if (tag == std::string::npos) return false;
  *final_name = stem.substr(1, tag - 1);
  *pid = std::stol(head.substr(pid_dash + 1));
  return *pid > 0;
}

bool is_stale_temporary(const std::string& path) {
  std::string final_name;
  long pid = 0;
  return parse_temp_name(fs::path(path).filename().string(), &final_name, &pid) && pid != ::getpid() &&
         writer_is_gone(pid, path);
}

void clean_leftovers_of(const std::string& final_path) {
  fs::path p(final_path);
  while (p.has_parent_path() && p.filename().empty()) p = p.parent_path();  // "out/" -> "out"
  clean(find_leftovers(parent_folder(p.string()), p.filename().string()));
}

void clean_leftovers_in(const std::string& dir) { clean(find_leftovers(dir)); }

}  // namespace optforge
