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

AtomicDir::AtomicDir(std::string final_path) : final_(std::move(final_path)) {
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  const std::string name = fs::path(final_).filename().string();
  if (name.empty() || name == "." || name == "..")
    throw Error("the output must be a named folder (e.g. -o out/), not '" + final_ + "'", final_);
  std::error_code ec;
  const std::string parent = parent_folder(final_);
  if (!fs::is_directory(parent, ec)) throw Error("parent folder does not exist", parent);
  clean_leftovers_of(final_);
  if (fs::exists(final_, ec)) {
    if (!fs::is_directory(final_, ec)) throw Error("the output exists and is not a folder", final_);
    clean_leftovers_in(final_);
    if (!fs::is_empty(final_, ec)) {
      fs::directory_iterator it(final_, ec);
      std::string first = !ec && it != fs::directory_iterator() ? it->path().filename().string() : "?";
      throw Error("the output folder already exists and is not empty (it holds " + first +
                      "); a folder output appears in one step, by renaming a finished folder into place, "
                      "so it must be new or empty: remove it or choose another",
                  final_);
    }
  }
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
