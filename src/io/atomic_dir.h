// An output folder that appears under its final name only when every file in it is complete:
// files are written into a temporary sibling folder, which is renamed into place by commit().
// Destroyed without commit(), the temporary folder and everything in it are removed.
#pragma once

#include <string>

namespace optforge {

class AtomicDir {
 public:
  // The final folder must not exist yet, or be empty (it is then replaced).
  explicit AtomicDir(std::string final_path);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  // Where to write a file that will end up as final_path/name.
  std::string path(const std::string& name) const { return temp_ + "/" + name; }
  void commit();

 private:
  std::string final_, temp_;
  bool committed_ = false;
};

}  // namespace optforge
