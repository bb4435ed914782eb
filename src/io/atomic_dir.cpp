#include "io/atomic_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <system_error>

#include "util/error.h"

namespace fs = std::filesystem;

namespace optforge {

AtomicDir::AtomicDir(std::string final_path) : final_(std::move(final_path)) {
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  std::error_code ec;
  if (fs::exists(final_, ec) && !(fs::is_directory(final_, ec) && fs::is_empty(final_, ec)))
    throw Error("output folder already exists and is not empty (remove it or choose another)", final_);
  fs::path f(final_);
  fs::path parent = f.has_parent_path() ? f.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) throw Error("parent folder does not exist", parent.string());
  std::random_device rd;
  std::string name = ".";
  name += f.filename().string();
  name += ".tmp-";
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(rd() % 1000000);
  temp_ = (parent / name).string();
  if (!fs::create_directory(temp_, ec)) throw Error("cannot create a temporary folder: " + ec.message(), temp_);
}

AtomicDir::~AtomicDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
}

void AtomicDir::commit() {
  std::error_code ec;
  if (fs::exists(final_, ec)) fs::remove(final_, ec);  // checked empty in the constructor
  if (std::rename(temp_.c_str(), final_.c_str()) != 0)
    throw Error("cannot rename the finished folder into place", final_);
  committed_ = true;
  fs::path parent = fs::path(final_).has_parent_path() ? fs::path(final_).parent_path() : fs::path(".");
  int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace optforge
