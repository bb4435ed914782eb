// HTTP/1.1 requests and responses as the server's handlers see them. Parsing and writing are the
// transport's (http_server.h, on Boost.Beast); these value types keep Beast out of every file
// that is not the transport itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace optforge::serve {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;   // "GET", "POST", ...
  std::string path;     // the target before '?' (no handler reads a query), percent-decoding not applied
  HttpHeaders headers;  // names lower-cased, values trimmed
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

}  // namespace optforge::serve
