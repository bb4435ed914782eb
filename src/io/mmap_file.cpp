#include "io/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "io/input_files.h"
#include "util/error.h"

namespace optforge {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(std::string("cannot open: ") + std::strerror(errno), path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(std::string("cannot stat: ") + std::strerror(e), path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error("is a directory, expected a file", path);
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = uint64_t(st.st_size);
  f->dev_ = st.st_dev, f->ino_ = st.st_ino, f->is_input_ = true;
  note_input_file(st.st_dev, st.st_ino);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error(std::string("cannot mmap: ") + std::strerror(e), path);
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

std::shared_ptr<MappedFile> MappedFile::from_bytes(const void* data, size_t size, const std::string& name) {
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = name;
  const auto* bytes = static_cast<const uint8_t*>(data);
  f->owned_.assign(bytes, bytes + size);
  static const uint8_t empty = 0;  // a valid pointer even for zero bytes, as a map of an empty file
  f->data_ = size ? f->owned_.data() : &empty;
  f->size_ = size;
  return f;
}

MappedFile::~MappedFile() {
  if (is_input_) release_input_file(dev_, ino_);
  if (data_ && owned_.empty() && size_ > 0) ::munmap(const_cast<uint8_t*>(data_), size_);
}

static void advise(const uint8_t* base, uint64_t size, uint64_t offset, uint64_t len, int how) {
  if (!base || offset >= size) return;
  long page = ::sysconf(_SC_PAGESIZE);
  uint64_t start = offset / uint64_t(page) * uint64_t(page);
  uint64_t end = std::min(size, offset + len);
  ::madvise(const_cast<uint8_t*>(base) + start, end - start, how);
}

void MappedFile::advise_done(uint64_t offset, uint64_t len) const { advise(data_, size_, offset, len, MADV_DONTNEED); }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(std::string("cannot open: ") + std::strerror(errno), path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace optforge
