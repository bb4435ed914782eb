// Typed, range-checked reads of a JSON request body's fields, each failure an ApiError 400
// naming the field (OpenAI's wording: "'abc' is not of type 'integer' - 'max_tokens'"). A
// missing field and an explicit null both give the default, as OpenAI's API treats them.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace optforge::serve {

// The request body as a JSON object, or ApiError 400 (malformed JSON, or not an object).
nlohmann::json parse_json_object(const std::string& body);

class Fields {
 public:
  explicit Fields(const nlohmann::json& object) : obj_(object) {}

  bool has(const std::string& key);                   // present and not null
  const nlohmann::json* raw(const std::string& key);  // nullptr when absent or null
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi);
  double number(const std::string& key, double def, double lo, double hi);
  bool boolean(const std::string& key, bool def);
  std::string string(const std::string& key, const std::string& def);
  // Marks a field as understood without reading it.
  void ignore(const std::string& key) { used_.insert(key); }
  // ApiError 400 for the first field nobody asked about (OpenAI rejects unknown arguments).
  void reject_unknown() const;

 private:
  const nlohmann::json& obj_;
  std::set<std::string> used_;
};

// "'x' is not of type 'integer' - 'field'"
std::string type_message(const nlohmann::json& value, const char* type, const std::string& field);

}  // namespace optforge::serve
