// The names of optforge's temporary outputs, and what the next run does with those a killed run
// left behind.
//
// An output X is written as ".X.tmp-optforge-<pid>-<n>" in X's folder (a file, or a folder for a
// folder output) and renamed to X only when complete, so a hard kill (kill -9, the OOM killer,
// power loss) can leave such a temporary but never a partial X. The next run writing X removes
// every temporary of X whose process is gone (or whose PID now belongs to a process started after
// the temporary was last written, i.e. a reused PID), saying so on stderr; one whose process may
// still be writing it is left alone and reported. Temporaries of older optforge versions
// (".X.tmp-<pid>-<n>") are recognised the same way.
#pragma once

#include <string>

namespace optforge {

// A fresh temporary path beside `final_path` (same folder), named as above for this process.
std::string temp_path_for(const std::string& final_path);

// Parses a directory entry's name; false if it is not an optforge temporary.
bool parse_temp_name(const std::string& name, std::string* final_name, long* pid);

// True when `path` is the temporary of another optforge process that is gone (what the cleaning
// below removes).
bool is_stale_temporary(const std::string& path);

// Removes the stale temporaries of `final_path` (file or folder) and reports, on stderr, each one
// removed and each one left alone. Never throws: cleaning up is best effort, and a temporary that
// cannot be removed is reported.
void clean_leftovers_of(const std::string& final_path);
// The same for every temporary inside the folder `dir`, whatever output it was meant to become.
void clean_leftovers_in(const std::string& dir);

}  // namespace optforge
