// What the GLOBALs we accept mean, as a fixed table: which names are allowed, and what calling
// (REDUCE), constructing (NEWOBJ) or building (BUILD) each one produces. Tensors are rebuilt as
// views of their storage; containers and config classes become inert Values.
#pragma once

#include <string>
#include <vector>

#include "pickle/value.h"

namespace optforge::torch_globals {

bool allowed(const std::string& qualified_name);
ValuePtr call(const std::string& fn, const std::vector<ValuePtr>& args);        // REDUCE
ValuePtr construct(const std::string& cls, const std::vector<ValuePtr>& args);  // NEWOBJ
void build(ValuePtr& target, const ValuePtr& state);                            // BUILD

// A storage as the pickle sees it: a 1-D tensor over all of it (from persistent_load).
ValuePtr storage_value(std::shared_ptr<Storage> storage);

}  // namespace optforge::torch_globals
