#include "serve/http_message.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace optforge::serve {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 9110 token characters, for method and header names.
bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool contains_token(std::string_view list, std::string_view token) {
  // Comma-separated, case-insensitive: "keep-alive, Upgrade".
  const std::string l = lower(list);
  size_t i = 0;
  while (i <= l.size()) {
    size_t j = l.find(',', i);
    if (j == std::string::npos) j = l.size();
    if (trim(std::string_view(l).substr(i, j - i)) == token) return true;
    i = j + 1;
  }
  return false;
}

}  // namespace

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

bool HttpRequest::wants_keep_alive() const {
  const std::string* c = header("connection");
  if (minor_version >= 1) return !(c && contains_token(*c, "close"));
  return c && contains_token(*c, "keep-alive");
}

std::optional<HttpParseError> parse_request_head(std::string_view head, HttpRequest& out) {
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);

  // Request line: exactly three parts separated by single spaces.
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return HttpParseError{400, "malformed request line"};
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                         version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_tchar))
    return HttpParseError{400, "malformed request method"};
  if (target.empty() || target.front() != '/') return HttpParseError{400, "the request target must start with '/'"};
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return HttpParseError{400, "control character in the request target"};
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1.") {
    if (version.substr(0, 5) == "HTTP/") return HttpParseError{505, "only HTTP/1.0 and HTTP/1.1 are supported"};
    return HttpParseError{400, "malformed HTTP version"};
  }
  if (version[7] != '0' && version[7] != '1') return HttpParseError{505, "only HTTP/1.0 and HTTP/1.1 are supported"};
  out.method = std::string(method);
  out.minor_version = version[7] - '0';
  const size_t q = target.find('?');
  out.path = std::string(target.substr(0, q));
  out.query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));

  out.headers.clear();
  while (!head.empty()) {
    eol = head.find("\r\n");
    line = head.substr(0, eol);
    head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
    if (line.empty()) continue;
    if (line.front() == ' ' || line.front() == '\t') return HttpParseError{400, "obsolete header line folding"};
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return HttpParseError{400, "malformed header line"};
    const std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return HttpParseError{400, "malformed header name"};
    const std::string_view value = trim(line.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return HttpParseError{400, "control character in a header value"};
    out.headers.emplace_back(lower(name), std::string(value));
  }
  if (out.minor_version == 1 && !out.header("host")) return HttpParseError{400, "HTTP/1.1 requests need a Host header"};
  return std::nullopt;
}

std::optional<HttpParseError> body_framing(const HttpRequest& req, BodyFraming& out) {
  out = {};
  const std::string* te = req.header("transfer-encoding");
  const std::string* cl = nullptr;
  for (const auto& [k, v] : req.headers)
    if (k == "content-length") {
      // Several Content-Length headers are only acceptable when they agree (RFC 9112 6.3).
      if (cl && *cl != v) return HttpParseError{400, "conflicting Content-Length headers"};
      cl = &v;
    }
  if (te) {
    if (cl) return HttpParseError{400, "both Transfer-Encoding and Content-Length"};  // request smuggling guard
    if (lower(trim(*te)) != "chunked") return HttpParseError{501, "unsupported Transfer-Encoding '" + *te + "'"};
    out.kind = BodyFraming::Kind::Chunked;
    return std::nullopt;
  }
  if (cl) {
    uint64_t n = 0;
    const char* end = cl->data() + cl->size();
    auto [p, ec] = std::from_chars(cl->data(), end, n);
    if (cl->empty() || ec != std::errc() || p != end) return HttpParseError{400, "malformed Content-Length"};
    out.kind = n ? BodyFraming::Kind::Length : BodyFraming::Kind::None;
    out.length = n;
  }
  return std::nullopt;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize_head(int status, const std::string& content_type, const HttpHeaders& headers,
                           int64_t body_length, bool keep_alive) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  if (!content_type.empty()) h += "Content-Type: " + content_type + "\r\n";
  if (body_length >= 0) h += "Content-Length: " + std::to_string(body_length) + "\r\n";
  else h += "Transfer-Encoding: chunked\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : headers) h += k + ": " + v + "\r\n";
  h += "\r\n";
  return h;
}

}  // namespace optforge::serve
