#include "serve/http_stream.h"

#include <algorithm>
#include <boost/beast/core/error.hpp>

namespace optforge::serve {
namespace {

// poll() for `events` until `deadline`, in slices of at most 100 ms; false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, int(std::min<long long>(left, 100)));
    if (r > 0) return true;  // readable, writable, or an error the next call reports
    if (r < 0 && errno != EINTR) return true;
  }
}

}  // namespace

SocketStream::SocketStream(net::ip::tcp::socket socket, std::chrono::milliseconds write_timeout)
    : socket_(std::move(socket)), write_timeout_(write_timeout) {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(net::ip::tcp::no_delay(true), ec);  // small SSE events go out at once
}

size_t SocketStream::read_some(char* p, size_t n, Clock::time_point deadline, boost::beast::error_code& ec) {
  for (;;) {
    const size_t got = socket_.read_some(net::buffer(p, n), ec);
    if (ec != net::error::would_block && ec != net::error::try_again && ec != net::error::interrupted) return got;
    if (!wait_for(socket_.native_handle(), POLLIN, deadline)) {
      ec = boost::beast::error::timeout;
      return 0;
    }
  }
}

bool SocketStream::write_all(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(socket_.native_handle(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(size_t(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    if (!wait_for(socket_.native_handle(), POLLOUT, Clock::now() + write_timeout_)) return false;
  }
  return true;
}

bool SocketStream::peer_gone() {
  pollfd p{socket_.native_handle(), POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  char c;  // readable: either pipelined bytes (still here) or end of stream (gone)
  return ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

bool SocketStream::wait_readable(int idle_ms, const std::atomic<bool>& stopping) {
  const auto until = Clock::now() + std::chrono::milliseconds(idle_ms);
  while (!stopping.load()) {
    pollfd p{socket_.native_handle(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return false;
    const int r = ::poll(&p, 1, int(std::min<long long>(left, 100)));  // wake up to notice a shutdown
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
  return false;
}

void SocketStream::linger() {
  const int fd = socket_.native_handle();
  ::shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + std::chrono::seconds(2);
  char sink[65536];
  for (size_t total = 0; total < (64u << 20) && Clock::now() < until;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) < 0 && errno != EINTR) break;
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
    if (n > 0) total += size_t(n);
  }
}

}  // namespace optforge::serve
