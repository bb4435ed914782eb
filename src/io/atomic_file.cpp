#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "io/fs_util.h"
#include "io/input_files.h"
#include "io/temp_names.h"
#include "io/temp_registry.h"
#include "util/error.h"

namespace optforge {
namespace {

constexpr size_t kBufSize = 8 << 20;

}  // namespace

AtomicFile::AtomicFile(std::string final_path) : final_(std::move(final_path)) {
  clean_leftovers_of(final_);
  temp_ = temp_path_for(final_);
  buf_ = static_cast<char*>(std::malloc(kBufSize));
  if (!buf_) throw Error("out of memory", final_);
  track_temp(temp_, false);  // before it exists: a signal can come at any moment after
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    untrack_temp(temp_);
    std::free(buf_);  // the destructor does not run when the constructor throws
    throw Error(std::string("cannot create output: ") + std::strerror(err), final_);
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    ::unlink(temp_.c_str());
    untrack_temp(temp_);
  }
  std::free(buf_);
}

void AtomicFile::flush() {
  size_t done = 0;
  while (done < buffered_) {
    ssize_t w = ::write(fd_, buf_ + done, buffered_ - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("write failed: ") + std::strerror(errno), final_);
    }
    done += size_t(w);
  }
  pos_ += buffered_;
  buffered_ = 0;
}

void AtomicFile::write(const void* data, size_t n) {
  if (finished_) throw Error("internal: write after finish()", final_);
  const char* p = static_cast<const char*>(data);
  if (n >= kBufSize) {  // large payloads (tensor data) go straight to the kernel
    flush();
    while (n > 0) {
      ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw Error(std::string("write failed: ") + std::strerror(errno), final_);
      }
      p += w;
      n -= size_t(w);
      pos_ += uint64_t(w);
    }
    return;
  }
  if (buffered_ + n > kBufSize) flush();
  std::memcpy(buf_ + buffered_, p, n);
  buffered_ += n;
}

void AtomicFile::pwrite(const void* data, size_t n, uint64_t offset) {
  if (offset + n > pos_) flush();
  if (offset + n > pos_) throw Error("internal: pwrite past the end of the output", final_);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd_, p, n, off_t(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("write failed: ") + std::strerror(errno), final_);
    }
    p += w;
    n -= size_t(w);
    offset += uint64_t(w);
  }
}

void AtomicFile::resize(uint64_t size) {
  if (finished_) throw Error("internal: resize after finish()", final_);
  flush();
  if (::ftruncate(fd_, off_t(size)) != 0)
    throw Error(std::string("cannot set the output's size: ") + std::strerror(errno), final_);
  pos_ = size;
}

void AtomicFile::finish() {
  if (finished_) return;
  flush();
  if (::fsync(fd_) != 0) throw Error(std::string("fsync failed: ") + std::strerror(errno), final_);
  ::close(fd_);
  fd_ = -1;
  std::free(buf_);
  buf_ = nullptr;
  finished_ = true;
}

void AtomicFile::commit() { commit_all({this}); }

void AtomicFile::commit_all(const std::vector<AtomicFile*>& files) {
  for (AtomicFile* f : files) f->finish();
  for (AtomicFile* f : files)  // checked for all before any is renamed: the set commits whole or not at all
    if (!f->committed_ && is_input_file(f->final_))
      throw Error("the output would replace an input file (inputs are never modified)", f->final_);
  std::map<std::string, std::string> dirs;  // folder -> an output renamed into it
  for (AtomicFile* f : files) {
    if (f->committed_) continue;
    if (::rename(f->temp_.c_str(), f->final_.c_str()) != 0)
      throw Error(std::string("cannot rename into place: ") + std::strerror(errno), f->final_);
    f->committed_ = true;
    untrack_temp(f->temp_);
    dirs.emplace(parent_folder(f->final_), f->final_);
  }
  for (const auto& [dir, output] : dirs) fsync_folder(dir, output, true);
}

}  // namespace optforge
