#include "serve/http_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace optforge::serve {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string dechunk(const std::string& c) {
  std::string out;
  size_t i = 0;
  for (;;) {
    const size_t eol = c.find("\r\n", i);
    if (eol == std::string::npos) throw Error("malformed chunked body");
    const unsigned long n = std::strtoul(c.substr(i, eol - i).c_str(), nullptr, 16);
    i = eol + 2;
    if (n == 0) return out;
    if (i + n + 2 > c.size()) throw Error("truncated chunked body");
    out.append(c, i, n);
    i += n + 2;
  }
}

HttpClientResponse http_request(const std::string& host, int port, const std::string& method, const std::string& path,
                                const std::string& body, const HttpHeaders& headers, int timeout_ms) {
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) throw Error("cannot resolve", where);
  Fd s;
  for (addrinfo* a = res; a && s.fd < 0; a = a->ai_next) {
    s.fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (s.fd >= 0 && ::connect(s.fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(s.fd);
      s.fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (s.fd < 0) throw Error(std::string("cannot connect: ") + std::strerror(errno), where);

  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + where + "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(s.fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw Error("the server closed the connection while the request was sent", where);
    sent += size_t(n);
  }
  // Read to the end (the server closes after answering a "Connection: close" request).
  std::string raw;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw Error("no complete answer within " + std::to_string(timeout_ms) + " ms", where);
    pollfd p{s.fd, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) continue;
    char buf[16384];
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    raw.append(buf, size_t(n));
  }
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0) throw Error("malformed answer", where);
  HttpClientResponse r;
  r.status = std::atoi(raw.c_str() + 9);
  size_t i = raw.find("\r\n") + 2;
  while (i < head_end) {
    const size_t eol = raw.find("\r\n", i);
    const std::string line = raw.substr(i, eol - i);
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.emplace_back(name, value);
    }
    i = eol + 2;
  }
  r.body = raw.substr(head_end + 4);
  for (const auto& [k, v] : r.headers)
    if (k == "transfer-encoding" && v == "chunked") r.body = dechunk(r.body);
  return r;
}

}  // namespace optforge::serve
