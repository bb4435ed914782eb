#include "serve/json_fields.h"

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "serve/api_error.h"

namespace optforge::serve {
namespace {

std::string shown(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// OpenAI's wording: "-1 is less than the minimum of 0 - 'max_tokens'".
std::string range_message(const std::string& field, const std::string& value, bool low, const std::string& bound) {
  return value + (low ? " is less than the minimum of " : " is greater than the maximum of ") + bound + " - '" + field +
         "'";
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

}  // namespace

nlohmann::json parse_json_object(const std::string& body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw bad_request(
        "We could not parse the JSON body of your request. The body must be a JSON object; "
        "check that it is valid JSON and that the Content-Type is application/json.");
  if (!j.is_object())
    throw bad_request("The request body must be a JSON object, not " + std::string(j.type_name()) + ".");
  return j;
}

std::string type_message(const nlohmann::json& value, const char* type, const std::string& field) {
  return shown(value) + " is not of type '" + type + "' - '" + field + "'";
}

bool Fields::has(const std::string& key) { return raw(key) != nullptr; }

const nlohmann::json* Fields::raw(const std::string& key) {
  used_.insert(key);
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t Fields::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  const nlohmann::json* v = raw(key);
  if (!v) return def;
  int64_t x = 0;
  if (v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))) {
    x = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             v->get<double>() == std::floor(v->get<double>()) && std::fabs(v->get<double>()) < 9e15) {
    x = int64_t(v->get<double>());  // 16.0 is an integer in JSON Schema too
  } else {
    throw bad_request(type_message(*v, "integer", key), key);
  }
  if (x < lo || x > hi)
    throw bad_request(range_message(key, std::to_string(x), x < lo, std::to_string(x < lo ? lo : hi)), key);
  return x;
}

double Fields::number(const std::string& key, double def, double lo, double hi) {
  const nlohmann::json* v = raw(key);
  if (!v) return def;
  if (!v->is_number()) throw bad_request(type_message(*v, "number", key), key);
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) throw bad_request(range_message(key, fmt(x), x < lo, fmt(x < lo ? lo : hi)), key);
  return x;
}

bool Fields::boolean(const std::string& key, bool def) {
  const nlohmann::json* v = raw(key);
  if (!v) return def;
  if (!v->is_boolean()) throw bad_request(type_message(*v, "boolean", key), key);
  return v->get<bool>();
}

std::string Fields::string(const std::string& key, const std::string& def) {
  const nlohmann::json* v = raw(key);
  if (!v) return def;
  if (!v->is_string()) throw bad_request(type_message(*v, "string", key), key);
  return v->get<std::string>();
}

void Fields::reject_unknown() const {
  for (auto it = obj_.begin(); it != obj_.end(); ++it)
    if (!used_.count(it.key())) throw bad_request("Unrecognized request argument supplied: " + it.key(), it.key());
}

}  // namespace optforge::serve
