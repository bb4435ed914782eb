// A small HTTP/1.1 server on POSIX sockets: one thread per connection (bounded), keep-alive,
// Content-Length and chunked request bodies, responses either whole or streamed with chunked
// transfer coding (server-sent events). It enforces the transport limits itself (connections,
// header and body size, timeouts) and answers them through the application's error page, so every
// refusal carries the same JSON error object as the API's own errors.
//
// Why not cpp-httplib: Debian's libcpp-httplib-dev is the split, compiled build (the header has
// no definitions; the .so is built with OpenSSL, zlib and brotli, whose defines change the
// header), so it would need its own link line and defines; and its connection limit queues
// sockets instead of refusing them, and it cannot tell a handler that a client went away before
// the next write. Both matter for a server whose requests hold a batch slot.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "serve/http_message.h"

namespace optforge::serve {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see HttpServer::port())
  int64_t max_connections = 64;     // beyond this, new connections get 429 and are closed
  int64_t max_body_bytes = 1 << 20;
  int64_t max_header_bytes = 16 << 10;
  int idle_timeout_ms = 5000;       // a kept-alive connection waiting for its next request
  int io_timeout_ms = 30000;        // a request arriving, or a write, that makes no progress
};

class Connection;

// One request's reply channel. A handler calls send() once, or start_stream(), write()s, and
// end_stream(). Every call returns false once the client is gone; later calls do nothing.
class HttpExchange {
 public:
  bool send(const HttpResponse& response);
  bool start_stream(int status, const std::string& content_type, const HttpHeaders& headers = {});
  bool write(std::string_view data);
  bool end_stream();
  // True when the client closed or reset its side (checked without blocking).
  bool client_gone() const;
  // Gives up on the exchange without answering (the client is gone): the connection closes.
  void abandon() { state_ = State::Done, failed_ = true; }
  bool responded() const { return state_ != State::Fresh; }
  bool failed() const { return failed_; }

 private:
  friend class HttpServer;
  enum class State { Fresh, Streaming, Done };
  HttpExchange(Connection& c, bool keep_alive) : conn_(c), keep_alive_(keep_alive) {}
  Connection& conn_;
  bool keep_alive_;
  State state_ = State::Fresh;
  bool failed_ = false;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpExchange&)>;
// The response for a transport-level refusal (400, 408, 413, 429, 431, ...).
using HttpErrorPage = std::function<HttpResponse(int status, const std::string& message)>;

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler, HttpErrorPage error_page);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens (throws optforge::Error naming the address), then accepts on a thread.
  void start();
  int port() const { return port_; }
  int64_t open_connections() const { return open_.load(); }

  // Closes the listening socket. Connections finish the request they are serving, then close.
  void stop_accepting();
  // Waits until every connection has closed; false on timeout.
  bool wait_connections(std::chrono::milliseconds timeout);
  // Shuts every open socket down, which wakes blocked reads and writes; then joins all threads.
  void stop();

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void accept_loop();
  void serve(int fd, bool refuse, Worker* self);
  void reap(bool all);

  HttpServerOptions opt_;
  HttpHandler handler_;
  HttpErrorPage error_page_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> open_{0}, refusing_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::list<Worker> workers_;  // guarded by mu_
  std::set<int> fds_;          // open connection sockets, guarded by mu_
};

}  // namespace optforge::serve
