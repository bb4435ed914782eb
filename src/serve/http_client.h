// A minimal HTTP/1.1 client for loopback use, on Boost.Beast: `optforge serve --once` sends its
// completion through the running server with it, and the C++ tests talk to test servers with it.
#pragma once

#include <string>

#include "serve/http_message.h"

namespace optforge::serve {

struct HttpClientResponse {
  int status = 0;
  std::string body;  // de-chunked
};

// One request on a fresh connection ("Connection: close"); reads the whole answer within
// `timeout_ms`. Throws optforge::Error when the server cannot be reached or the answer is
// malformed or late.
HttpClientResponse http_request(const std::string& host, int port, const std::string& method, const std::string& path,
                                const std::string& body = {}, const HttpHeaders& headers = {}, int timeout_ms = 60000);

}  // namespace optforge::serve
