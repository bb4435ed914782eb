#include "io/json_file.h"

#include "io/mmap_file.h"
#include "util/error.h"

namespace optforge {

nlohmann::json parse_json_object(std::string_view text, const std::string& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) { throw Error(std::string("not valid JSON: ") + e.what(), file); }
  if (!j.is_object())
    throw Error(std::string("holds a JSON ") + j.type_name() + " value, expected a JSON object", file);
  return j;
}

nlohmann::json read_json_object(const std::string& path) { return parse_json_object(read_text_file(path), path); }

}  // namespace optforge
