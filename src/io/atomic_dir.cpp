#include "io/atomic_dir.h"

#include <stdio.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "io/fs_util.h"
#include "io/temp_names.h"
#include "io/temp_registry.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace optforge {

namespace {

std::string without_trailing_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

}  // namespace

void check_new_folder_output(const std::string& path) {
  const std::string final = without_trailing_slashes(path);
  const std::string name = fs::path(final).filename().string();
  if (name.empty() || name == "." || name == "..")
    throw Error("the output must be a named folder (e.g. -o out/), not '" + final + "'", final);
  std::error_code ec;
  const std::string parent = parent_folder(final);
  if (!fs::is_directory(parent, ec)) throw Error("parent folder does not exist", parent);
  if (!fs::exists(final, ec)) return;
  if (!fs::is_directory(final, ec)) throw Error("the output exists and is not a folder", final);
  for (auto it = fs::directory_iterator(final, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (!is_stale_temporary(it->path().string()))
      throw Error("the output folder is not empty: it already holds " + it->path().filename().string() +
                      "; a folder output appears in one step, by renaming a finished folder into place, "
                      "so it must be new or empty: remove it or choose another",
                  final);
  if (ec) throw Error("cannot list the output folder: " + ec.message(), final);
}

AtomicDir::AtomicDir(std::string final_path) : final_(without_trailing_slashes(std::move(final_path))) {
  check_new_folder_output(final_);
  clean_leftovers_of(final_);
  std::error_code ec;
  if (fs::is_directory(final_, ec)) clean_leftovers_in(final_);
  temp_ = temp_path_for(final_);
  track_temp(temp_, true);  // before it exists: a signal can come at any moment after
  if (!fs::create_directory(temp_, ec)) {
    untrack_temp(temp_);
    throw Error("cannot create a temporary folder: " + ec.message(), temp_);
  }
}

AtomicDir::~AtomicDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
    untrack_temp(temp_);
  }
}

void AtomicDir::commit() {
  fsync_folder(temp_, final_, false);  // the names of the files inside, before the folder is visible
  // rename(2) replaces an empty folder atomically (checked empty in the constructor).
  if (::rename(temp_.c_str(), final_.c_str()) != 0)
    throw Error(std::string("cannot rename the finished folder into place: ") + std::strerror(errno), final_);
  committed_ = true;
  untrack_temp(temp_);
  fsync_folder(parent_folder(final_), final_, true);
}

}  // namespace optforge
