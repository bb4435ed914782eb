// An output folder that appears under its final name only when every file in it is complete:
// files are written into a temporary sibling folder (".NAME.tmp-optforge-<pid>-<n>"), which
// commit() fsyncs and renames into place in one step, then fsyncs the parent. Destroyed without
// commit() (an error, Ctrl-C), the temporary folder and everything in it are removed; a hard kill
// can leave it (never a partial final folder), and the next AtomicDir for the same final name
// removes it (temp_names.h).
#pragma once

#include <string>

namespace optforge {

// Throws Error naming the folder unless `path` could be an AtomicDir's final folder: a named
// folder (not "." or ".."; trailing '/' ignored) in an existing parent, not there yet or empty
// but for the temporaries of interrupted runs (which AtomicDir removes). Changes nothing, so a
// dry run answers with the same rule as the real one.
void check_new_folder_output(const std::string& path);

class AtomicDir {
 public:
  // The final folder must pass check_new_folder_output: new, or empty (it is then replaced by the
  // rename); a folder that already holds files cannot be replaced in one step, and mixing a new
  // output into it would not be crash-safe. Stale temporaries of an interrupted run, beside it or
  // (from older optforge versions) inside it, are removed first.
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
