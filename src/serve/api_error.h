// An error a client caused or must be told about, with its HTTP status, as OpenAI reports them:
// {"error": {"message", "type", "param", "code"}}. Thrown by request parsing and the scheduler's
// admission checks; the routes turn it into a response (alpa's routes add alpa's own fields).
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace optforge::serve {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string code = {})
      : std::runtime_error(message),
        status_(status),
        message_(std::move(message)),
        param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& message() const { return message_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // OpenAI's "type" for the status: invalid_request_error, authentication_error, ...
  std::string type() const;

  nlohmann::json to_json() const;

  // A 405's Allow header (RFC 9110: the methods the resource takes); "" for other errors.
  const std::string& allow() const { return allow_; }
  ApiError allowing(std::string methods) const {
    ApiError e = *this;
    e.allow_ = std::move(methods);
    return e;
  }

 private:
  int status_;
  std::string message_, param_, code_, allow_;
};

inline ApiError bad_request(std::string message, std::string param = {}) {
  return ApiError(400, std::move(message), std::move(param));
}

}  // namespace optforge::serve
