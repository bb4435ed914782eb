// HTTP/1.1 requests and responses as the server's handlers see them, and the serializer for a
// response's head. Parsing is Boost.Beast's (see http_server.h); these value types keep Beast
// out of every file that is not the transport itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace optforge::serve {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;     // "GET", "POST", ...
  std::string path;       // the target before '?', percent-decoding not applied
  std::string query;      // after '?', may be empty
  int minor_version = 1;  // HTTP/1.<minor>
  HttpHeaders headers;    // names lower-cased, values trimmed
  std::string body;

  // The first header with this (lower-case) name.
  const std::string* header(std::string_view lower_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  HttpHeaders headers;  // extra headers
  std::string body;
};

// "OK", "Not Found", ... for the status codes this server uses.
const char* reason_phrase(int status);

// The status line and headers of a response, ending in the blank line. `body_length` < 0 means
// chunked transfer coding (streaming).
std::string serialize_head(int status, const std::string& content_type, const HttpHeaders& headers, int64_t body_length,
                           bool keep_alive);

}  // namespace optforge::serve
