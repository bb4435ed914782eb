// Small file-system steps every output writer shares.
#pragma once

#include <string>

namespace optforge {

// The folder holding `path` as written ("a/b" -> "a", "/b" -> "/", "b" -> "."). `path` must not
// end in '/' (strip it first: "a/b/" would give "a/b").
std::string parent_folder(const std::string& path);

// Makes the names in folder `dir` durable (fsync(2) on the folder): a rename into it, or the files
// written inside it. Before a rename, a failure must stop the output: throws optforge::Error
// naming `output`. With `after_rename`, a rename has already made `output` visible, complete and
// in place, and only its survival across a power loss is in doubt: a failure is then reported as
// a warning on stderr, never thrown (the output cannot be taken back).
void fsync_folder(const std::string& dir, const std::string& output, bool after_rename);

}  // namespace optforge
