// An output file that appears under its final name only when complete: written to a temporary
// name in the same folder, fsynced, then renamed over the target (and the folder fsynced). If the
// writer is destroyed without commit() — an exception, Ctrl-C — the temporary is removed and
// nothing exists under the final name. A hard kill can leave the temporary (never a partial final
// file); it is named ".NAME.tmp-optforge-<pid>-<n>" and the next AtomicFile for the same final
// name removes it (temp_names.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace optforge {

class AtomicFile {
 public:
  // Removes stale temporaries of `final_path` (reported on stderr) and creates a fresh one.
  // Throws Error (naming final_path) if the temporary cannot be created.
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Writes at an absolute offset already written (to patch headers); does not move the end.
  void pwrite(const void* data, size_t n, uint64_t offset);
  uint64_t position() const { return pos_ + buffered_; }
  // Sets the file's length to `size` (new bytes read as zeros) and moves the end there, so that
  // pwrite() may fill any part of [0, size). pwrite()s inside that range never touch the buffer
  // and may come from several threads at once (each to its own bytes).
  void resize(uint64_t size);
  void commit();  // flush, fsync, rename, fsync the folder
  // The first half of commit(): flush, fsync and close, but keep the temporary name. The file can
  // no longer be written; it appears under its final name only through commit()/commit_all(), and
  // is still removed if the object is destroyed before that.
  void finish();
  // Commits a group of outputs that belong together (the shards of one checkpoint): finishes all
  // of them first, and renames any into place only once every one is complete on disk.
  static void commit_all(const std::vector<AtomicFile*>& files);
  const std::string& path() const { return final_; }

 private:
  void flush();
  std::string final_, temp_;
  int fd_ = -1;
  uint64_t pos_ = 0;  // bytes handed to the kernel
  char* buf_ = nullptr;
  size_t buffered_ = 0;
  bool committed_ = false;
  bool finished_ = false;
};

}  // namespace optforge
