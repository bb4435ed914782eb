// The JSON files optforge reads (config.json, *.index.json, tokenizer.json, tokenizer_config.json,
// special_tokens_map.json): one parser and one error shape for all of them. Values of the wrong
// JSON type inside the object are the callers' to check; each names the key it expected.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace optforge {

// `text` parsed as a JSON object. Throws Error naming `file`: "not valid JSON: <parser's
// message>", or "holds a JSON <type> value, expected a JSON object".
nlohmann::json parse_json_object(std::string_view text, const std::string& file);
// The same for the file at `path` (read whole; it is counted as an input, see io/input_files.h).
nlohmann::json read_json_object(const std::string& path);

}  // namespace optforge
