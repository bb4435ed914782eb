// HTTP/1.1 requests and responses as the server's handlers see them, and the parser for a
// request's head (request line + headers). Kept apart from the socket code so the parser can be
// tested on strings, and so handlers never see a socket.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace optforge::serve {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;   // "GET", "POST", ...
  std::string path;     // the target before '?', percent-decoding not applied
  std::string query;    // after '?', may be empty
  int minor_version = 1;  // HTTP/1.<minor>
  HttpHeaders headers;  // names lower-cased, values trimmed
  std::string body;

  // The first header with this (lower-case) name.
  const std::string* header(std::string_view lower_name) const;
  // HTTP/1.1 keeps the connection unless told "close"; HTTP/1.0 only with "keep-alive".
  bool wants_keep_alive() const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  HttpHeaders headers;  // extra headers
  std::string body;
};

// What went wrong reading a request, as the status to answer with.
struct HttpParseError {
  int status;  // 400, 413, 431, 501, 505
  std::string message;
};

// Parses "METHOD target HTTP/1.x\r\n(name: value\r\n)*" (the head without its final blank line).
// Fills method, path, query, minor_version and headers.
std::optional<HttpParseError> parse_request_head(std::string_view head, HttpRequest& out);

// How the body is framed: none, a Content-Length, or chunked transfer coding.
struct BodyFraming {
  enum class Kind { None, Length, Chunked } kind = Kind::None;
  uint64_t length = 0;
};
std::optional<HttpParseError> body_framing(const HttpRequest& req, BodyFraming& out);

// "OK", "Not Found", ... for the status codes this server uses.
const char* reason_phrase(int status);

// The status line and headers of a response, ending in the blank line. `body_length` < 0 means
// chunked transfer coding (streaming).
std::string serialize_head(int status, const std::string& content_type, const HttpHeaders& headers,
                           int64_t body_length, bool keep_alive);

}  // namespace optforge::serve
