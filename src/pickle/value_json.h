// A Value tree as JSON, for `inspect --json` and for writing configs: containers map to arrays
// and objects, objects to their plain data, tensors to a short descriptor.
#pragma once

#include <nlohmann/json.hpp>

#include "pickle/value.h"

namespace optforge {

nlohmann::ordered_json value_to_json(const ValuePtr& v);
// One-line rendering for humans ("{'a': 1, ...}" style, cut at max_chars).
std::string value_to_short_string(const ValuePtr& v, size_t max_chars = 120);

}  // namespace optforge
