#include "serve/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "serve/http_stream.h"
#include "util/error.h"

namespace optforge::serve {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

HttpClientResponse http_request(const std::string& host, int port, const std::string& method, const std::string& path,
                                const std::string& body, const HttpHeaders& headers, int timeout_ms) {
  const std::string where = host + ":" + std::to_string(port);
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  net::io_context ioc;
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) throw Error("cannot resolve: " + ec.message(), where);
  tcp::socket sock(ioc);
  net::connect(sock, endpoints, ec);
  if (ec) throw Error("cannot connect: " + ec.message(), where);
  SocketStream s(std::move(sock), std::chrono::milliseconds(timeout_ms));
  DeadlineStream ds{s, deadline};

  http::request<http::string_body> req;
  req.method_string(method);
  req.target(path);
  req.version(11);
  req.set(http::field::host, host);
  req.keep_alive(false);
  for (const auto& [k, v] : headers) req.insert(k, v);
  if (!body.empty() || method == "POST") req.body() = body;
  req.prepare_payload();
  http::write(ds, req, ec);
  if (ec) throw Error("cannot send the request: " + ec.message(), where);

  http::response_parser<http::string_body> p;
  p.header_limit(1 << 20);
  p.body_limit(boost::none);
  beast::flat_buffer buf;
  http::read(ds, buf, p, ec);
  if (ec) throw Error("no valid answer: " + ec.message(), where);
  HttpClientResponse out;
  const auto& m = p.get();
  out.status = int(m.result_int());
  out.body = std::move(p.get().body());
  return out;
}

}  // namespace optforge::serve
