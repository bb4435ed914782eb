// The HTTP/1.1 server: Boost.Beast's strict request parser on Boost.Asio sockets, one thread per
// connection, handlers that block while they answer.
//
// Design (the simplest that meets the limits): an acceptor thread takes connections and counts
// them per client address and in total; beyond either cap a few extra threads read the request
// head and answer 429 (past those the socket is just closed: a flood must not buy threads). Each
// admitted connection gets its own thread, which parses requests with
// beast::http::request_parser (header and body limits) from a non-blocking socket whose every
// read waits only until an absolute deadline: one deadline for the whole request head (from its
// first byte) and a fresh one for the whole body, never reset by a single recv, so a client
// trickling bytes is answered 408 and closed at the deadline. Between requests the idle timeout
// applies. Requests on one connection (keep-alive, pipelined) are parsed and answered in order
// by that thread; the handler runs on it too, so the synchronous handler contract stays: send()
// once, or start_stream() / write() / end_stream() (chunked transfer coding, for server-sent
// events), each returning false once the client is gone. Every transport refusal (400, 408, 413,
// 429, 431, 501, 505) goes through the application's error page, so it carries the same JSON
// error object as the API's own errors.
//
// Beast is compiled only in http_server.cpp, http_stream.cpp and http_client.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "serve/http_message.h"

namespace optforge::serve {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                          // 0: any free port (see HttpServer::port())
  int64_t max_connections = 64;             // in total; beyond, new connections get 429 and are closed
  int64_t max_connections_per_client = 48;  // from one client address (capped by max_connections)
  int64_t max_body_bytes = 1 << 20;         // 413 beyond
  int64_t max_header_bytes = 16 << 10;      // request line + headers; 431 beyond
  int idle_timeout_ms = 5000;               // a connection waiting for its next request's first byte
  int request_timeout_ms = 30000;           // the whole request head, then again the whole body; 408
  int write_timeout_ms = 30000;             // a write to a client that accepts no byte
  int sse_keepalive_ms = 15000;             // an event stream idle this long gets a ": keep-alive" comment
  // CORS: origins ("https://a.example", or "*") whose browser requests may read the answers;
  // empty: no CORS headers at all (the default).
  std::vector<std::string> allowed_origins;
};

class ByteStream;

// One request's reply channel. A handler calls send() once, or start_stream(), write()s, and
// end_stream(). Every call returns false once the client is gone; later calls do nothing.
class HttpExchange {
 public:
  bool send(const HttpResponse& response);
  bool start_stream(int status, const std::string& content_type, const HttpHeaders& headers = {});
  bool write(std::string_view data);
  bool end_stream();
  // True when the client closed or reset its side (checked without blocking). On an event
  // stream idle for sse_keepalive_ms it first sends a comment line, which keeps proxies from
  // timing out while the request waits in the queue and notices a client that went away.
  bool client_gone();
  // Gives up on the exchange without answering (the client is gone): the connection closes.
  void abandon() { state_ = State::Done, failed_ = true; }
  bool responded() const { return state_ != State::Fresh; }
  bool failed() const { return failed_; }

 private:
  friend struct ConnectionLoop;
  enum class State { Fresh, Streaming, Done };
  HttpExchange(ByteStream& s, bool keep_alive, HttpHeaders extra, int keepalive_ms)
      : stream_(s), keep_alive_(keep_alive), extra_(std::move(extra)), keepalive_ms_(keepalive_ms) {}
  HttpHeaders with_extra(const HttpHeaders& h) const;
  ByteStream& stream_;
  bool keep_alive_;
  HttpHeaders extra_;  // CORS headers for this request
  int keepalive_ms_;
  bool event_stream_ = false;
  std::chrono::steady_clock::time_point last_write_{};
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

  struct Impl;

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void accept_loop();
  void serve(std::unique_ptr<ByteStream> stream, int fd, const std::string& client, const std::string* refusal,
             Worker* self);
  void reap(bool all);

  HttpServerOptions opt_;
  HttpHandler handler_;
  HttpErrorPage error_page_;
  std::unique_ptr<Impl> impl_;  // the Asio acceptor
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> open_{0}, refusing_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::list<Worker> workers_;                  // guarded by mu_
  std::set<int> fds_;                          // open connection sockets, guarded by mu_
  std::map<std::string, int64_t> per_client_;  // open connections by client address, guarded by mu_
};

// Serves one connection whose client sends `input` and then closes its sending side; returns the
// bytes the server answers. Same parser, limits, handler and error page as a live connection
// (deadlines never fire on memory). For the fuzz target and tests.
std::string serve_bytes(std::string_view input, const HttpServerOptions& options, const HttpHandler& handler,
                        const HttpErrorPage& error_page);

}  // namespace optforge::serve
