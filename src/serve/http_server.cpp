#include "serve/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "util/error.h"

namespace optforge::serve {

// One accepted socket: buffered reads with timeouts, and whole writes.
class Connection {
 public:
  Connection(int fd, const HttpServerOptions& o, const std::atomic<bool>& stopping) : fd_(fd), opt_(o), stopping_(stopping) {}

  enum class Read { Ok, Closed, Timeout, Stopping };

  // Reads more bytes into buf_. `idle`: waiting between requests, where server shutdown and the
  // idle timeout end the wait; otherwise the I/O timeout applies.
  Read fill(bool idle) {
    const int limit = idle ? opt_.idle_timeout_ms : opt_.io_timeout_ms;
    for (int waited = 0; waited < limit;) {
      if (idle && stopping_.load()) return Read::Stopping;
      pollfd p{fd_, POLLIN, 0};
      const int slice = std::min(100, limit - waited);  // wake up to notice a shutdown
      const int r = ::poll(&p, 1, slice);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Read::Closed;
      if (r == 0) {
        waited += slice;
        continue;
      }
      char tmp[16384];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return Read::Closed;
      buf_.append(tmp, size_t(n));
      return Read::Ok;
    }
    return Read::Timeout;
  }

  // Makes sure at least `n` unread bytes are buffered.
  Read need(size_t n) {
    while (buf_.size() - pos_ < n) {
      const Read r = fill(false);
      if (r != Read::Ok) return r;
    }
    return Read::Ok;
  }

  // Reads a CRLF-terminated line of at most `limit` bytes (without the CRLF).
  Read line(std::string& out, size_t limit, bool& too_long) {
    too_long = false;
    for (;;) {
      const size_t eol = buf_.find("\r\n", pos_);
      if (eol != std::string::npos) {
        out = buf_.substr(pos_, eol - pos_);
        pos_ = eol + 2;
        return Read::Ok;
      }
      if (buf_.size() - pos_ > limit) {
        too_long = true;
        return Read::Ok;
      }
      const Read r = fill(false);
      if (r != Read::Ok) return r;
    }
  }

  std::string take(size_t n) {
    std::string s = buf_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  // Drops consumed bytes (the start of a pipelined next request stays).
  void compact() {
    buf_.erase(0, pos_);
    pos_ = 0;
  }

  bool write_all(std::string_view data) {
    while (!data.empty()) {
      pollfd p{fd_, POLLOUT, 0};
      const int r = ::poll(&p, 1, opt_.io_timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || (p.revents & (POLLERR | POLLHUP))) return false;
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      data.remove_prefix(size_t(n));
    }
    return true;
  }

  bool peer_gone() const {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    char c;  // readable: either pipelined bytes (still here) or end of stream (gone)
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

  std::string& buffer() { return buf_; }
  size_t& pos() { return pos_; }

 private:
  int fd_;
  const HttpServerOptions& opt_;
  const std::atomic<bool>& stopping_;
  std::string buf_;
  size_t pos_ = 0;
};

// ---- HttpExchange

bool HttpExchange::send(const HttpResponse& r) {
  if (state_ != State::Fresh || failed_) return false;
  state_ = State::Done;
  std::string out = serialize_head(r.status, r.content_type, r.headers, int64_t(r.body.size()), keep_alive_);
  out += r.body;
  if (!conn_.write_all(out)) failed_ = true;
  return !failed_;
}

bool HttpExchange::start_stream(int status, const std::string& content_type, const HttpHeaders& headers) {
  if (state_ != State::Fresh || failed_) return false;
  state_ = State::Streaming;
  if (!conn_.write_all(serialize_head(status, content_type, headers, -1, keep_alive_))) failed_ = true;
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
  if (!conn_.write_all(chunk)) failed_ = true;
  return !failed_;
}

bool HttpExchange::end_stream() {
  if (state_ != State::Streaming || failed_) return false;
  state_ = State::Done;
  if (!conn_.write_all("0\r\n\r\n")) failed_ = true;
  return !failed_;
}

bool HttpExchange::client_gone() const { return failed_ || conn_.peer_gone(); }

// ---- HttpServer

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler, HttpErrorPage error_page)
    : opt_(std::move(options)), handler_(std::move(handler)), error_page_(std::move(error_page)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string where = opt_.host + ":" + std::to_string(opt_.port);
  if (int e = ::getaddrinfo(opt_.host.c_str(), std::to_string(opt_.port).c_str(), &hints, &res); e != 0)
    throw Error(std::string("cannot resolve the address: ") + gai_strerror(e), where);
  std::string last = "no address";
  for (addrinfo* a = res; a && listen_fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 512) == 0) {
      listen_fd_ = fd;
    } else {
      last = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0) throw Error("cannot listen: " + last, where);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

void HttpServer::accept_loop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {  // a short timeout so stop_accepting() is noticed
      reap(false);
      continue;
    }
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small SSE events go out at once
    reap(false);
    // Over the limit: a few extra threads answer 429 so the client learns why; past those the
    // socket is simply closed (a flood must not buy threads).
    const bool refuse = open_.load() >= opt_.max_connections;
    if (refuse && refusing_.load() >= 16) {
      ::close(fd);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    (refuse ? refusing_ : open_).fetch_add(1);
    fds_.insert(fd);
    Worker& w = workers_.emplace_back();
    w.thread = std::thread([this, fd, refuse, &w] { serve(fd, refuse, &w); });
  }
}

void HttpServer::serve(int fd, bool refuse, Worker* self) {
  Connection c(fd, opt_, stopping_);
  bool linger = false;
  auto refuse_with = [&](int status, const std::string& message) {
    HttpExchange ex(c, false);
    ex.send(error_page_(status, message));
    linger = true;
  };
  for (;;) {
    // The head: up to the blank line. Stray CRLFs before a request are allowed (RFC 9112 2.2).
    c.compact();
    size_t head_end;
    bool closed = false;
    while ((head_end = c.buffer().find("\r\n\r\n")) == std::string::npos) {
      while (c.buffer().rfind("\r\n", 0) == 0) c.buffer().erase(0, 2);
      if (int64_t(c.buffer().size()) > opt_.max_header_bytes) {
        refuse_with(431, "the request head exceeds " + std::to_string(opt_.max_header_bytes) + " bytes");
        closed = true;
        break;
      }
      // Before a request's first byte the connection is idle: the idle timeout applies, and a
      // shutdown closes it.
      const Connection::Read r = c.fill(c.buffer().empty());
      if (r == Connection::Read::Ok) continue;
      if (r == Connection::Read::Timeout && !c.buffer().empty()) refuse_with(408, "the request was not received in time");
      closed = true;
      break;
    }
    if (closed) break;
    if (int64_t(head_end) > opt_.max_header_bytes) {
      refuse_with(431, "the request head exceeds " + std::to_string(opt_.max_header_bytes) + " bytes");
      break;
    }
    HttpRequest req;
    if (auto e = parse_request_head(std::string_view(c.buffer()).substr(0, head_end), req)) {
      refuse_with(e->status, e->message);
      break;
    }
    c.pos() = head_end + 4;
    if (refuse) {
      refuse_with(429, "too many concurrent connections (the limit is " + std::to_string(opt_.max_connections) + ")");
      break;
    }
    BodyFraming framing;
    if (auto e = body_framing(req, framing)) {
      refuse_with(e->status, e->message);
      break;
    }
    const uint64_t max_body = uint64_t(opt_.max_body_bytes);
    if (framing.kind == BodyFraming::Kind::Length && framing.length > max_body) {
      refuse_with(413, "the request body has " + std::to_string(framing.length) + " bytes; the limit is " +
                           std::to_string(max_body));
      break;
    }
    const std::string* expect = req.header("expect");
    if (expect && framing.kind != BodyFraming::Kind::None && c.buffer().size() == c.pos()) {
      if (!c.write_all("HTTP/1.1 100 Continue\r\n\r\n")) break;
    }
    // The body.
    bool ok = true;
    if (framing.kind == BodyFraming::Kind::Length) {
      const Connection::Read r = c.need(size_t(framing.length));
      if (r != Connection::Read::Ok) {
        if (r == Connection::Read::Timeout) refuse_with(408, "the request body was not received in time");
        break;
      }
      req.body = c.take(size_t(framing.length));
    } else if (framing.kind == BodyFraming::Kind::Chunked) {
      for (;;) {
        std::string line;
        bool too_long = false;
        Connection::Read r = c.line(line, 1024, too_long);
        if (r != Connection::Read::Ok || too_long) { ok = false; break; }
        const std::string size_text = line.substr(0, line.find(';'));
        char* end = nullptr;
        errno = 0;
        const unsigned long long n = std::strtoull(size_text.c_str(), &end, 16);
        if (size_text.empty() || *end != '\0' || errno) { ok = false; break; }
        if (n == 0) {  // trailers until a blank line
          do r = c.line(line, 8192, too_long);
          while (r == Connection::Read::Ok && !too_long && !line.empty());
          ok = r == Connection::Read::Ok && !too_long;
          break;
        }
        if (req.body.size() + n > max_body) {
          refuse_with(413, "the request body exceeds " + std::to_string(max_body) + " bytes");
          ok = false;
          req.body.clear();
          break;
        }
        if (c.need(size_t(n) + 2) != Connection::Read::Ok) { ok = false; break; }
        req.body += c.take(size_t(n));
        if (c.take(2) != "\r\n") { ok = false; break; }
      }
      if (!ok) {
        refuse_with(400, "malformed chunked request body");  // after a 413 this write fails harmlessly
        break;
      }
    }
    const bool keep_alive = req.wants_keep_alive() && !stopping_.load();
    HttpExchange ex(c, keep_alive);
    try {
      handler_(req, ex);
      if (!ex.responded()) ex.send(error_page_(500, "the handler sent no response"));
    } catch (const std::exception& e) {
      if (!ex.responded()) ex.send(error_page_(500, e.what()));
      else ok = false;
    }
    if (ex.state_ == HttpExchange::State::Streaming) ok = false;  // unfinished stream: the framing is lost
    if (!ok || ex.failed() || !keep_alive || stopping_.load()) break;
  }
  // After a refusal the client may still be sending (a body over the limit): closing with
  // unread bytes would reset the connection and lose the error response, so half-close and
  // drain for a moment first.
  if (linger) {
    ::shutdown(fd, SHUT_WR);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    char sink[65536];
    for (size_t total = 0; total < (64u << 20) && std::chrono::steady_clock::now() < until;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) < 0 && errno != EINTR) break;
      const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
      if (n > 0) total += size_t(n);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fds_.erase(fd);
    ::close(fd);
  }
  (refuse ? refusing_ : open_).fetch_sub(1);
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
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
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
