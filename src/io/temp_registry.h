// This process's temporary outputs (AtomicFile's files, AtomicDir's folders), so that SIGINT,
// SIGTERM and SIGHUP remove them before the process dies. A hard kill (SIGKILL, power loss) runs
// no handler; what it leaves is recognised by its name and removed by the next run (temp_names.h).
#pragma once

#include <string>

namespace optforge {

// Registers a temporary file (is_dir false) or folder (its entries and itself are removed).
// Best effort: beyond a fixed number of temporaries at once, later ones are not tracked.
void track_temp(const std::string& path, bool is_dir);
void untrack_temp(const std::string& path);

// Installs the handler: removes every tracked temporary, then re-raises the signal with its
// default action (so the exit status still says which signal ended the process). Called once.
void install_cleanup_on_signal();

}  // namespace optforge
