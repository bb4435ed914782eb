// A pickle interpreter that never executes anything. It runs the pickle virtual machine over
// protocols 0-5 and builds a Value tree. A GLOBAL is accepted only if it is on the allowlist
// (what torch.load(weights_only=True) accepts, plus the inert classes real metaseq files hold);
// anything else is refused with the module.name, the file and the byte offset. Calls (REDUCE,
// NEWOBJ, BUILD) on allowlisted names are interpreted by a fixed table, never dispatched.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "pickle/value.h"

namespace optforge {

struct UnpickleOptions {
  // Turn unknown GLOBALs into inert Object records instead of refusing them (for `inspect` of
  // files holding foreign classes). Never needed for files torch or metaseq write.
  bool allow_unknown_globals = false;
};

// Resolves a persistent id (torch: the ('storage', cls, key, location, numel) tuple) to a value.
using PersistentLoad = std::function<ValuePtr(const ValuePtr& pid)>;

// `file` and `where` only name the pickle in errors (e.g. "model.pt", "archive/data.pkl").
// `end_offset`, if given, receives the offset just past STOP (legacy files hold several pickles).
ValuePtr unpickle(std::string_view data, const std::string& file, const std::string& where,
                  const PersistentLoad& persistent_load, const UnpickleOptions& opts = {},
                  size_t* end_offset = nullptr);

// True if `module.name` may appear in a GLOBAL (exposed for tests and docs).
bool global_allowed(const std::string& qualified_name);

}  // namespace optforge
