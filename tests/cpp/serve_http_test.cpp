// The HTTP layer on its own: the request-head parser and body framing on strings, then a live
// server on a free loopback port (keep-alive, chunked bodies both ways, limits answered through
// the error page).
#include <gtest/gtest.h>

#include "serve/http_client.h"
#include "serve/http_server.h"
#include "util/error.h"

using namespace optforge::serve;

TEST(HttpParse, RequestLineAndHeaders) {
  HttpRequest r;
  ASSERT_FALSE(parse_request_head("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type:  application/json \r\n", r));
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/completions");
  EXPECT_EQ(r.query, "x=1");
  ASSERT_NE(r.header("content-type"), nullptr);
  EXPECT_EQ(*r.header("content-type"), "application/json");
  EXPECT_TRUE(r.wants_keep_alive());
  ASSERT_FALSE(parse_request_head("GET / HTTP/1.0\r\n", r));
  EXPECT_FALSE(r.wants_keep_alive());
}

TEST(HttpParse, RefusesMalformedHeads) {
  HttpRequest r;
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\n", r)->status, 400);  // no Host
  EXPECT_EQ(parse_request_head("GET / HTTP/2.0\r\nHost: a\r\n", r)->status, 505);
  EXPECT_EQ(parse_request_head("GET  / HTTP/1.1\r\nHost: a\r\n", r)->status, 400);
  EXPECT_EQ(parse_request_head("GET x HTTP/1.1\r\nHost: a\r\n", r)->status, 400);
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n", r)->status, 400);
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHo st: a\r\n", r)->status, 400);
  EXPECT_EQ(parse_request_head("G(T / HTTP/1.1\r\nHost: a\r\n", r)->status, 400);
}

TEST(HttpParse, BodyFraming) {
  HttpRequest r;
  BodyFraming f;
  ASSERT_FALSE(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n", r));
  ASSERT_FALSE(body_framing(r, f));
  EXPECT_EQ(f.kind, BodyFraming::Kind::Length);
  EXPECT_EQ(f.length, 12u);
  ASSERT_FALSE(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n", r));
  EXPECT_EQ(body_framing(r, f)->status, 400);
  ASSERT_FALSE(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n", r));
  EXPECT_EQ(body_framing(r, f)->status, 400);
  ASSERT_FALSE(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n", r));
  EXPECT_EQ(body_framing(r, f)->status, 400);  // a smuggling vector: refused
  ASSERT_FALSE(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n", r));
  EXPECT_EQ(body_framing(r, f)->status, 501);
  ASSERT_FALSE(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n", r));
  ASSERT_FALSE(body_framing(r, f));
  EXPECT_EQ(f.kind, BodyFraming::Kind::Chunked);
}

TEST(HttpParse, Dechunk) {
  EXPECT_EQ(dechunk("3\r\nabc\r\n1;ext=1\r\nd\r\n0\r\n\r\n"), "abcd");
  EXPECT_THROW(dechunk("5\r\nab"), optforge::Error);
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
        [](int status, const std::string& m) { return HttpResponse{status, "application/json", {}, "{\"error\":\"" + m + "\"}"}; });
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
