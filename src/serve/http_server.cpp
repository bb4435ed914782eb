#include "serve/http_server.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <cstdio>
#include <cstring>

#include "serve/http_stream.h"
#include "util/error.h"

namespace optforge::serve {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string str(beast::string_view s) { return std::string(s.data(), s.size()); }

// The status line and headers of a response, ending in the blank line. `body_length` < 0 means
// chunked transfer coding (streaming). The reason phrase is Beast's (RFC 7231's names).
std::string serialize_head(int status, const std::string& content_type, const HttpHeaders& headers, int64_t body_length,
                           bool keep_alive) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " +
                  str(http::obsolete_reason(http::int_to_status(unsigned(status)))) + "\r\n";
  if (!content_type.empty()) h += "Content-Type: " + content_type + "\r\n";
  // A 204 has no body and no framing headers (RFC 9110 8.6).
  if (status != 204)
    h +=
        body_length >= 0 ? "Content-Length: " + std::to_string(body_length) + "\r\n" : "Transfer-Encoding: chunked\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : headers) h += k + ": " + v + "\r\n";
  h += "\r\n";
  return h;
}

// An in-memory client: `input`, then end of stream; what the server writes is collected.
class MemoryStream final : public ByteStream {
 public:
  explicit MemoryStream(std::string_view input) : in_(input) {}
  size_t read_some(char* p, size_t n, Clock::time_point, beast::error_code& ec) override {
    if (in_.empty()) {
      ec = net::error::eof;
      return 0;
    }
    n = std::min(n, in_.size());
    std::memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
    ec = {};
    return n;
  }
  bool write_all(std::string_view data) override {
    out.append(data);
    return true;
  }
  bool peer_gone() override { return false; }
  bool wait_readable(int, const std::atomic<bool>&) override { return !in_.empty(); }
  std::string out;

 private:
  std::string_view in_;
};

// The status that answers a failed read, or 0 when the client is simply gone.
int status_for(const beast::error_code& ec, std::string& message, const HttpServerOptions& o) {
  if (ec == beast::error::timeout) return message = "the request was not received in time", 408;
  if (ec == http::error::header_limit)
    return message = "the request head exceeds " + std::to_string(o.max_header_bytes) + " bytes", 431;
  if (ec == http::error::body_limit)
    return message = "the request body exceeds " + std::to_string(o.max_body_bytes) + " bytes", 413;
  if (ec == http::error::bad_version) return message = "only HTTP/1.0 and HTTP/1.1 are supported", 505;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return 0;
  if (ec.category() == http::make_error_code(http::error::bad_method).category())
    return message = "malformed request: " + ec.message(), 400;
  return 0;  // a socket error
}

}  // namespace

// ---- HttpExchange

HttpHeaders HttpExchange::with_extra(const HttpHeaders& h) const {
  HttpHeaders all = h;
  all.insert(all.end(), extra_.begin(), extra_.end());
  return all;
}

bool HttpExchange::send(const HttpResponse& r) {
  if (state_ != State::Fresh || failed_) return false;
  state_ = State::Done;
  std::string out =
      serialize_head(r.status, r.content_type, with_extra(r.headers), int64_t(r.body.size()), keep_alive_);
  out += r.body;
  if (!stream_.write_all(out)) failed_ = true;
  return !failed_;
}

bool HttpExchange::start_stream(int status, const std::string& content_type, const HttpHeaders& headers) {
  if (state_ != State::Fresh || failed_) return false;
  state_ = State::Streaming;
  event_stream_ = content_type.rfind("text/event-stream", 0) == 0;
  last_write_ = Clock::now();
  if (!stream_.write_all(serialize_head(status, content_type, with_extra(headers), -1, keep_alive_))) failed_ = true;
  return !failed_;
}

bool HttpExchange::write(std::string_view data) {
  if (state_ != State::Streaming || failed_) return false;
  if (data.empty()) return true;  // an empty chunk would end the stream
  char size[32];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string chunk(size, size_t(n));
  chunk.append(data);
  chunk += "\r\n";
  last_write_ = Clock::now();
  if (!stream_.write_all(chunk)) failed_ = true;
  return !failed_;
}

bool HttpExchange::end_stream() {
  if (state_ != State::Streaming || failed_) return false;
  state_ = State::Done;
  if (!stream_.write_all("0\r\n\r\n")) failed_ = true;
  return !failed_;
}

bool HttpExchange::client_gone() {
  if (failed_) return true;
  if (state_ == State::Streaming && event_stream_ && keepalive_ms_ > 0 &&
      Clock::now() - last_write_ >= std::chrono::milliseconds(keepalive_ms_))
    write(": keep-alive\n\n");
  return failed_ || stream_.peer_gone();
}

// ---- one connection: requests in order, each answered before the next is read

struct ConnectionLoop {
  ByteStream& s;
  const HttpServerOptions& o;
  const HttpHandler& handler;
  const HttpErrorPage& error_page;
  const std::atomic<bool>& stopping;
  beast::flat_buffer buf{};  // bytes read past the current request (pipelining) stay here

  // Empty lines before a request line are ignored (RFC 9112 2.2).
  void skip_blank_lines() {
    for (;;) {
      const auto* d = static_cast<const char*>(buf.data().data());
      if (buf.size() >= 2 && d[0] == '\r' && d[1] == '\n')
        buf.consume(2);
      else
        return;
    }
  }

  // Beast 1.81 lets any byte through a quoted chunk-extension value; control characters there
  // (a bare LF above all) are refused, as RFC 9112 7.1.1's qdtext says.
  static void check_chunk_extensions(uint64_t, beast::string_view extensions, beast::error_code& ec) {
    for (char c : extensions)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) ec = http::error::bad_chunk_extension;
  }

  void refuse(int status, const std::string& message) {
    HttpExchange ex(s, false, {}, 0);
    ex.send(error_page(status, message));
    s.linger();
  }

  // Reads the next request into `req`; false when the connection is to close (a refusal, if
  // any, has been sent). `refusal`: answer this 429 instead of serving the request.
  bool read_request(HttpRequest& req, bool& keep_alive, const std::string* refusal) {
    skip_blank_lines();
    if (buf.size() == 0 && !s.wait_readable(o.idle_timeout_ms, stopping)) return false;
    http::request_parser<http::string_body> p;
    p.header_limit(uint32_t(std::clamp<int64_t>(o.max_header_bytes, 1, UINT32_MAX)));
    p.body_limit(uint64_t(std::max<int64_t>(o.max_body_bytes, 0)));
    p.on_chunk_header(check_chunk_extensions);
    const auto timeout = std::chrono::milliseconds(o.request_timeout_ms);
    // One deadline for the whole head; its bytes are kept to check what Beast would repair.
    std::string head(static_cast<const char*>(buf.data().data()), buf.size());
    DeadlineStream ds{s, Clock::now() + timeout, &head};
    beast::error_code ec;
    std::string message;
    http::read_header(ds, buf, p, ec);
    if (ec) {
      if (const int status = status_for(ec, message, o)) refuse(status, message);
      return false;
    }
    ds.record = nullptr;
    head.resize(head.size() - buf.size());
    // Beast joins obs-fold continuation lines into the value; RFC 9112 5.2 allows refusing them
    // instead, which keeps a proxy that reads the lines differently from disagreeing with us.
    if (head.find("\n ") != std::string::npos || head.find("\n\t") != std::string::npos)
      return refuse(400, "obsolete header line folding"), false;
    auto& m = p.get();
    if (m.version() != 10 && m.version() != 11) return refuse(505, "only HTTP/1.0 and HTTP/1.1 are supported"), false;
    if (m.version() == 11 && m.count(http::field::host) != 1)
      return refuse(400, "HTTP/1.1 requests need exactly one Host header"), false;
    const std::string target = str(m.target());
    if (target.empty() || target.front() != '/') return refuse(400, "the request target must start with '/'"), false;
    if (refusal) return refuse(429, *refusal), false;
    if (m.count(http::field::transfer_encoding) > 1 ||
        (m.count(http::field::transfer_encoding) && !beast::iequals(m[http::field::transfer_encoding], "chunked")))
      return refuse(501, "unsupported Transfer-Encoding '" + str(m[http::field::transfer_encoding]) + "'"), false;
    if (!p.is_done()) {
      // A client that waits for "100 Continue" before its body gets it once the head is accepted.
      if (beast::iequals(m[http::field::expect], "100-continue") && buf.size() == 0 &&
          !s.write_all("HTTP/1.1 100 Continue\r\n\r\n"))
        return false;
      ds.deadline = Clock::now() + timeout;  // and one for the whole body
      http::read(ds, buf, p, ec);
      if (ec) {
        if (const int status = status_for(ec, message, o)) refuse(status, message);
        return false;
      }
    }
    req.method = str(m.method_string());
    const size_t q = target.find('?');
    req.path = target.substr(0, q);
    for (const auto& f : m) req.headers.emplace_back(lower(str(f.name_string())), str(f.value()));
    req.body = std::move(m.body());
    keep_alive = m.keep_alive() && !stopping.load();
    return true;
  }

  // CORS headers (none when CORS is off); `preflight`: an OPTIONS request the transport answers
  // itself. With CORS on, every response says `Vary: Origin`, allowed origin or not, so that a
  // shared cache never hands one origin's answer (with or without Allow-Origin) to another.
  HttpHeaders cors(const HttpRequest& req, bool& preflight) const {
    preflight = false;
    if (o.allowed_origins.empty()) return {};
    const std::string* origin = req.header("origin");
    const auto& a = o.allowed_origins;
    const bool listed = origin && std::find(a.begin(), a.end(), *origin) != a.end();
    if (!listed && (!origin || std::find(a.begin(), a.end(), "*") == a.end())) return {{"Vary", "Origin"}};
    preflight = req.method == "OPTIONS" && req.header("access-control-request-method");
    return {{"Access-Control-Allow-Origin", listed ? *origin : "*"}, {"Vary", "Origin"}};
  }

  void run(const std::string* refusal) {
    for (;;) {
      HttpRequest req;
      bool keep_alive = false;
      if (!read_request(req, keep_alive, refusal)) return;
      bool preflight = false;
      HttpExchange ex(s, keep_alive, cors(req, preflight), o.sse_keepalive_ms);
      if (preflight) {
        const std::string* h = req.header("access-control-request-headers");
        ex.send({204,
                 "",
                 {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                  {"Access-Control-Allow-Headers", h ? *h : "Authorization, Content-Type"},
                  {"Access-Control-Max-Age", "600"}},
                 ""});
      } else {
        try {
          handler(req, ex);
          if (!ex.responded()) ex.send(error_page(500, "the handler sent no response"));
        } catch (const std::exception& e) {
          if (ex.responded()) return;  // mid-answer: the framing is lost
          ex.send(error_page(500, e.what()));
        }
      }
      if (ex.state_ == HttpExchange::State::Streaming) return;  // unfinished stream: the framing is lost
      if (ex.failed() || !keep_alive || stopping.load()) return;
    }
  }
};

std::string serve_bytes(std::string_view input, const HttpServerOptions& options, const HttpHandler& handler,
                        const HttpErrorPage& error_page) {
  MemoryStream s(input);
  const std::atomic<bool> stopping{false};
  ConnectionLoop{s, options, handler, error_page, stopping}.run(nullptr);
  return std::move(s.out);
}

// ---- HttpServer

struct HttpServer::Impl {
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
};

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler, HttpErrorPage error_page)
    : opt_(std::move(options)),
      handler_(std::move(handler)),
      error_page_(std::move(error_page)),
      impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  const std::string where = opt_.host + ":" + std::to_string(opt_.port);
  tcp::resolver resolver(impl_->ioc);
  beast::error_code ec;
  const auto endpoints = resolver.resolve(opt_.host, std::to_string(opt_.port), tcp::resolver::passive, ec);
  if (ec) throw Error("cannot resolve the address: " + ec.message(), where);
  tcp::acceptor& a = impl_->acceptor;
  std::string last = "no address";
  for (const auto& e : endpoints) {
    a.open(e.endpoint().protocol(), ec);
    if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(e.endpoint(), ec);
    if (!ec) a.listen(512, ec);
    if (!ec) break;
    last = ec.message();
    beast::error_code ignored;
    a.close(ignored);
  }
  if (!a.is_open()) throw Error("cannot listen: " + last, where);
  a.non_blocking(true, ec);
  port_ = a.local_endpoint(ec).port();
  acceptor_ = std::thread([this] { accept_loop(); });
}

void HttpServer::accept_loop() {
  tcp::acceptor& a = impl_->acceptor;
  while (!stopping_.load()) {
    pollfd p{a.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {  // a short timeout so stop_accepting() is noticed
      reap(false);
      continue;
    }
    beast::error_code ec;
    tcp::socket sock(impl_->ioc);
    a.accept(sock, ec);
    if (ec) continue;
    ::fcntl(sock.native_handle(), F_SETFD, FD_CLOEXEC);
    net::ip::address addr = sock.remote_endpoint(ec).address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) addr = net::ip::make_address_v4(net::ip::v4_mapped, addr.to_v6());
    const std::string client = ec ? std::string("?") : addr.to_string();
    reap(false);
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t per_client_cap = std::min(opt_.max_connections_per_client, opt_.max_connections);
    std::string refusal;
    if (open_.load() >= opt_.max_connections)
      refusal = "too many concurrent connections (the limit is " + std::to_string(opt_.max_connections) + ")";
    else if (per_client_[client] >= per_client_cap)
      refusal =
          "too many concurrent connections from " + client + " (the limit is " + std::to_string(per_client_cap) + ")";
    const bool refuse = !refusal.empty();
    // Over a limit: a few extra threads answer 429 so the client learns why; past those the
    // socket is simply closed (a flood must not buy threads).
    if (refuse && refusing_.load() >= 16) continue;
    if (!refuse) ++per_client_[client];
    (refuse ? refusing_ : open_).fetch_add(1);
    const int fd = sock.native_handle();
    fds_.insert(fd);
    auto stream = std::make_unique<SocketStream>(std::move(sock), std::chrono::milliseconds(opt_.write_timeout_ms));
    Worker& w = workers_.emplace_back();
    w.thread = std::thread([this, s = std::move(stream), fd, client, refusal, &w]() mutable {
      serve(std::move(s), fd, client, refusal.empty() ? nullptr : &refusal, &w);
    });
  }
}

void HttpServer::serve(std::unique_ptr<ByteStream> stream, int fd, const std::string& client,
                       const std::string* refusal, Worker* self) {
  try {
    ConnectionLoop{*stream, opt_, handler_, error_page_, stopping_}.run(refusal);
  } catch (const std::exception&) {
    // bad_alloc and the like: this connection ends, the server goes on
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fds_.erase(fd);
    stream.reset();  // closes the socket while stop() cannot shut its number down
    if (!refusal && --per_client_[client] <= 0) per_client_.erase(client);
  }
  (refusal ? refusing_ : open_).fetch_sub(1);
  self->done.store(true);
}

void HttpServer::reap(bool all) {
  std::list<Worker> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      auto next = std::next(it);
      if (all || it->done.load()) finished.splice(finished.end(), workers_, it);
      it = next;
    }
  }
  for (Worker& w : finished)
    if (w.thread.joinable()) w.thread.join();
}

void HttpServer::stop_accepting() {
  stopping_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

bool HttpServer::wait_connections(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (open_.load() + refusing_.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void HttpServer::stop() {
  stop_accepting();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  reap(true);
}

}  // namespace optforge::serve
