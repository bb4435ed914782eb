// The HTTP layer on its own: request heads and body framing through serve_bytes (the connection
// loop on memory), then a live server on a free loopback port (keep-alive, chunked bodies both
// ways, limits answered through the error page). Raw-socket tests against the real binary are in
// tests/python/test_http_transport.py.
#include <gtest/gtest.h>

#include "serve/http_client.h"
#include "serve/http_server.h"
#include "util/error.h"

using namespace optforge::serve;

namespace {

// What one connection sending `raw` gets back, through the same parser and limits as a socket.
std::string answer(const std::string& raw, HttpRequest* seen = nullptr) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  return serve_bytes(
      raw, o,
      [seen](const HttpRequest& r, HttpExchange& ex) {
        if (seen) *seen = r;
        ex.send({200, "text/plain", {}, r.method + " " + r.path + " " + r.body});
      },
      [](int status, const std::string& m) {
        return HttpResponse{status, "application/json", {}, "{\"error\":\"" + m + "\"}"};
      });
}

int status_of(const std::string& raw) {
  const std::string a = answer(raw);
  return a.rfind("HTTP/1.1 ", 0) == 0 ? std::stoi(a.substr(9, 3)) : 0;
}

}  // namespace

TEST(HttpParse, RequestLineAndHeaders) {
  HttpRequest r;
  EXPECT_NE(answer("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type:  application/json \r\n"
                   "Content-Length: 2\r\n\r\n{}",
                   &r)
                .find("Connection: keep-alive"),
            std::string::npos);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/completions");
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_EQ(*r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, "{}");
  EXPECT_NE(answer("GET / HTTP/1.0\r\n\r\n", &r).find("Connection: close"), std::string::npos);
}

TEST(HttpParse, RefusesMalformedHeads) {
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\n\r\n"), 400);  // no Host
  EXPECT_EQ(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
  EXPECT_EQ(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(status_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

TEST(HttpParse, BodyFraming) {
  EXPECT_NE(answer("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nhello world!").find("POST / hello world!"),
            std::string::npos);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n"), 400);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
  // A smuggling vector: refused.
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"), 400);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 501);
  EXPECT_NE(
      answer("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;ext=1\r\nd\r\n0\r\n\r\n")
          .find("POST / abcd"),
      std::string::npos);
  // Chunk sizes are bare hex digits; extensions hold no control characters.
  const std::string chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const char* size : {"0x2", "+2", " 2", "-2", "2 ", "2;a\nb", "2;a=\"\nb\"", "fffffffffffffffff"})
    EXPECT_EQ(status_of(chunked + size + "\r\nab\r\n0\r\n\r\n"), 400) << size;
  EXPECT_EQ(status_of(chunked + "2;a=\"b c\"\r\nab\r\n0\r\n\r\n"), 200);
  EXPECT_EQ(status_of(chunked + "3e9\r\n"), 413);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"), 413);
}

TEST(HttpParse, CorsOnlyForAllowedOrigins) {
  HttpServerOptions o;
  const auto handler = [](const HttpRequest& r, HttpExchange& ex) { ex.send({200, "text/plain", {}, r.method}); };
  const auto page = [](int status, const std::string&) { return HttpResponse{status, "text/plain", {}, "x"}; };
  const std::string preflight =
      "OPTIONS /v1/completions HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example\r\n"
      "Access-Control-Request-Method: POST\r\n\r\n";
  const std::string get = "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example\r\n\r\n";
  std::string out = serve_bytes(preflight + get, o, handler, page);  // off: the handler sees OPTIONS
  EXPECT_EQ(out.find("Access-Control"), std::string::npos);
  EXPECT_NE(out.find("\r\n\r\nOPTIONS"), std::string::npos);
  o.allowed_origins = {"https://a.example"};
  out = serve_bytes(preflight + get, o, handler, page);
  EXPECT_EQ(out.rfind("HTTP/1.1 204 No Content\r\n", 0), 0u);
  EXPECT_NE(out.find("Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"), std::string::npos);
  EXPECT_NE(out.find("\r\n\r\nGET"), std::string::npos);
  EXPECT_EQ(out.find("Content-Length: 0"), std::string::npos);  // a 204 has no framing
  size_t n = 0;
  for (size_t i = out.find("Access-Control-Allow-Origin: https://a.example\r\n"); i != std::string::npos;
       i = out.find("Access-Control-Allow-Origin: https://a.example\r\n", i + 1))
    ++n;
  EXPECT_EQ(n, 2u);
  o.allowed_origins = {"https://b.example"};
  EXPECT_EQ(serve_bytes(get, o, handler, page).find("Access-Control"), std::string::npos);
}

class LiveServer : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions o;
    o.port = 0;
    o.max_body_bytes = 1000;
    server_ = std::make_unique<HttpServer>(
        o,
        [](const HttpRequest& r, HttpExchange& ex) {
          if (r.path == "/stream") {
            ex.start_stream(200, "text/event-stream");
            for (int i = 0; i < 3; ++i) ex.write("data: " + std::to_string(i) + "\n\n");
            ex.end_stream();
          } else if (r.path == "/throw") {
            throw std::runtime_error("boom");
          } else {
            ex.send({200, "text/plain", {}, r.method + " " + r.path + " " + r.body});
          }
        },
        [](int status, const std::string& m) {
          return HttpResponse{status, "application/json", {}, "{\"error\":\"" + m + "\"}"};
        });
    server_->start();
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(LiveServer, AnswersRequestsAndStreams) {
  auto r = http_request("127.0.0.1", server_->port(), "POST", "/echo", "hello");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /echo hello");
  r = http_request("127.0.0.1", server_->port(), "GET", "/stream");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "data: 0\n\ndata: 1\n\ndata: 2\n\n");
  r = http_request("127.0.0.1", server_->port(), "GET", "/throw");
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("boom"), std::string::npos);
}

TEST_F(LiveServer, LimitsGoThroughTheErrorPage) {
  auto r = http_request("127.0.0.1", server_->port(), "POST", "/echo", std::string(5000, 'x'));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("\"error\""), std::string::npos);
  r = http_request("127.0.0.1", server_->port(), "GET", "/echo", {}, {{"X-Big", std::string(20000, 'y')}});
  EXPECT_EQ(r.status, 431);
  // Still serving.
  EXPECT_EQ(http_request("127.0.0.1", server_->port(), "GET", "/ok").status, 200);
}

TEST_F(LiveServer, StopsWithOpenConnections) {
  EXPECT_EQ(http_request("127.0.0.1", server_->port(), "GET", "/ok").status, 200);
  server_->stop_accepting();
  EXPECT_TRUE(server_->wait_connections(std::chrono::seconds(5)));
  EXPECT_THROW(http_request("127.0.0.1", server_->port(), "GET", "/ok", {}, {}, 2000), optforge::Error);
  server_->stop();
}
