// Private to the HTTP transport (included only by http_server.cpp and http_client.cpp, the two
// files that compile Boost.Beast): a client connection as a byte stream with deadlines, and the
// adapter that lets Beast's synchronous parser and serializer read and write it.
//
// Why a deadline on every read instead of Beast's tcp_stream: tcp_stream's timeouts only apply to
// asynchronous operations, and the handlers are synchronous (they block while a completion is
// generated). A read here waits at most until an absolute time point, so a caller can give a
// whole request head one deadline however the client slices it (slowloris).
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <chrono>
#include <string>
#include <string_view>

namespace optforge::serve {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

// One connection's bytes. Implementations: a TCP socket (the server and the client) and an
// in-memory buffer (the fuzz target).
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Reads at least one byte into [p, p + n); 0 with `ec` set at end of stream (net::error::eof),
  // past `deadline` (beast::error::timeout) or on a socket error.
  virtual size_t read_some(char* p, size_t n, Clock::time_point deadline, boost::beast::error_code& ec) = 0;
  // Writes everything; false when the peer is gone or accepts nothing for `write_timeout`.
  virtual bool write_all(std::string_view data) = 0;
  // True when the peer closed or reset its side (never blocks; pipelined bytes are not a close).
  virtual bool peer_gone() = 0;
  // Waits for the first byte of a request: false after `idle_ms` without one, or once `stopping`.
  virtual bool wait_readable(int idle_ms, const std::atomic<bool>& stopping) = 0;
  // After a refusal: half-closes and drains what the client still sends for a moment, so that
  // closing with unread bytes does not reset the connection and lose the error response.
  virtual void linger() {}
};

class SocketStream final : public ByteStream {
 public:
  // Takes the connected socket; switches it to non-blocking mode (waits are poll()s).
  SocketStream(net::ip::tcp::socket socket, std::chrono::milliseconds write_timeout);
  size_t read_some(char* p, size_t n, Clock::time_point deadline, boost::beast::error_code& ec) override;
  bool write_all(std::string_view data) override;
  bool peer_gone() override;
  bool wait_readable(int idle_ms, const std::atomic<bool>& stopping) override;
  void linger() override;

 private:
  net::ip::tcp::socket socket_;
  std::chrono::milliseconds write_timeout_;
};

// Beast's SyncReadStream and SyncWriteStream over a ByteStream; every read ends by `deadline`.
struct DeadlineStream {
  ByteStream& stream;
  Clock::time_point deadline;
  std::string* record = nullptr;  // when set, every byte read is appended here too

  template <class Buffers>
  size_t read_some(const Buffers& buffers, boost::beast::error_code& ec) {
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
      const net::mutable_buffer b = *it;
      if (!b.size()) continue;
      const size_t n = stream.read_some(static_cast<char*>(b.data()), b.size(), deadline, ec);
      if (record) record->append(static_cast<const char*>(b.data()), n);
      return n;
    }
    ec = {};
    return 0;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    boost::beast::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::beast::system_error(ec);
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers, boost::beast::error_code& ec) {
    size_t total = 0;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
      const net::const_buffer b = *it;
      if (!stream.write_all(std::string_view(static_cast<const char*>(b.data()), b.size()))) {
        ec = net::error::broken_pipe;
        return total;
      }
      total += b.size();
    }
    ec = {};
    return total;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    boost::beast::error_code ec;
    const size_t n = write_some(buffers, ec);
    if (ec) throw boost::beast::system_error(ec);
    return n;
  }
};

}  // namespace optforge::serve
