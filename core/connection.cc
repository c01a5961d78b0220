#include "core/connection.h"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "core/log.h"

namespace spate {

Connection::Connection(Reactor& reactor, int fd) : reactor_(reactor), fd_(fd) {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Connection::~Connection() {
  if (fd_ >= 0)
    close(fd_);
}

void Connection::StartReading() {
  reading_ = true;
  ArmRecv();
}

void Connection::Connect(const sockaddr_storage& addr, socklen_t len) {
  peer_ = addr;
  connect_in_flight_ = true;
  connect_op_ =
      reactor_.Connect(fd_, reinterpret_cast<const sockaddr*>(&peer_), len, [this](int res) {
        connect_in_flight_ = false;
        ++busy_;
        if (!finished_)
          OnConnected(res < 0 ? -res : 0);
        --busy_;
        MaybeDestroy();
      });
}

void Connection::ResumeReading() {
  paused_ = false;
  ArmRecv();
}

void Connection::ArmRecv() {
  if (recv_in_flight_ || closing_ || finished_ || paused_ || !reading_)
    return;
  if (output_limit_ != 0 && queued_output() > output_limit_) {
    // The peer is not reading what we say: stop listening to it until it does (ArmSend()
    // resumes). Its input waits in the kernel, then TCP pushes back on it.
    if (!output_blocked_ && output_paused_counter_ != nullptr)
      output_paused_counter_->Add();
    output_blocked_ = true;
    return;
  }
  output_blocked_ = false;
  recv_in_flight_ = true;
  // The reactor's pooled buffers: an idle connection holds none (in_ is used only on kernels
  // without buffer rings).
  reactor_.RecvPooled(fd_, &in_, [this](int res, std::string_view data) {
    recv_in_flight_ = false;
    ++busy_;
    if (!finished_) {
      if (res > 0) {
        if (!closing_)
          OnData(data);
        ArmRecv();
      } else if (!closing_) {
        // 0: the peer closed its side; < 0: an error (ECONNRESET, ECANCELED at shutdown...).
        Finish(res == 0 ? 0 : -res);
      }
      // While closing, the send path finishes the connection once its output is out.
    }
    --busy_;
    MaybeDestroy();
  });
}

void Connection::Send(std::string_view bytes) {
  if (finished_ || closing_ || bytes.empty())
    return;
  pending_.append(bytes);
  ArmSend();
}

void Connection::Send(std::string&& bytes) {
  if (finished_ || closing_ || bytes.empty())
    return;
  if (pending_.empty()) {
    pending_ = std::move(bytes);
  } else {
    pending_.append(bytes);
  }
  ArmSend();
}

void Connection::ArmSend() {
  if (send_in_flight_ || finished_)
    return;
  if (out_offset_ == out_.size()) {
    // Sent: the buffer goes (a connection at rest holds no send buffer; most sends were moved
    // in whole, so the next one brings its own). Swapped out, not assigned: move-assigning an
    // empty string keeps the old allocation (libstdc++ copies a short source into it), and
    // 16,000 delivery connections each kept their last message that way.
    std::string().swap(out_);
    out_offset_ = 0;
    if (pending_.empty()) {
      if (closing_) {
        // Output is flushed: end the connection (the peer sees FIN after our last bytes).
        Finish(0);
      } else {
        ++busy_;
        OnSendDrained();
        --busy_;
      }
      return;
    }
    out_ = std::move(pending_);
    std::string().swap(pending_);  // whatever buffer the move left it
  }
  send_in_flight_ = true;
  reactor_.Send(fd_, out_.data() + out_offset_, out_.size() - out_offset_, [this](int res) {
    send_in_flight_ = false;
    ++busy_;
    if (!finished_) {
      if (res < 0) {
        Finish(-res);
      } else {
        out_offset_ += static_cast<size_t>(res);
        ArmSend();
        if (output_blocked_ && queued_output() <= output_limit_ / 2)
          ArmRecv();
      }
    }
    --busy_;
    MaybeDestroy();
  });
}

size_t Connection::output_buffer_bytes() const {
  const size_t local = std::string().capacity();  // the string's own, in-object buffer
  return (out_.capacity() > local ? out_.capacity() : 0) +
         (pending_.capacity() > local ? pending_.capacity() : 0);
}

void Connection::Close() {
  if (closing_ || finished_)
    return;
  closing_ = true;
  ArmSend();
  MaybeDestroy();
}

void Connection::Abort() {
  if (finished_)
    return;
  closing_ = true;
  Finish(0);
  MaybeDestroy();
}

void Connection::Finish(int error) {
  if (finished_)
    return;
  finished_ = true;
  // Wakes any operation still in the ring; their completions then let the object go.
  shutdown(fd_, SHUT_RDWR);
  // shutdown() does not end a connect still in SYN_SENT: cancel it in the ring.
  if (connect_in_flight_)
    reactor_.Cancel(connect_op_);
  ++busy_;
  OnClosed(error);
  --busy_;
}

void Connection::MaybeDestroy() {
  // Deleted only when finished, outside any callback of ours, and with no operation of ours
  // still in the ring (they name our buffers).
  if (finished_ && busy_ == 0 && !recv_in_flight_ && !send_in_flight_ && !connect_in_flight_) {
    delete this;
  }
}

Result<sockaddr_storage> ParseEndpoint(std::string_view endpoint, socklen_t* len) {
  std::string host;
  std::string port;
  if (!endpoint.empty() && endpoint.front() == '[') {
    auto close_bracket = endpoint.find(']');
    if (close_bracket == std::string_view::npos || close_bracket + 1 >= endpoint.size() ||
        endpoint[close_bracket + 1] != ':') {
      return Errno(EINVAL);
    }
    host = std::string(endpoint.substr(1, close_bracket - 1));
    port = std::string(endpoint.substr(close_bracket + 2));
  } else {
    auto colon = endpoint.rfind(':');
    if (colon == std::string_view::npos)
      return Errno(EINVAL);
    host = std::string(endpoint.substr(0, colon));
    port = std::string(endpoint.substr(colon + 1));
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  // Called at start-up and config load only, never on a reactor thread: may block on DNS.
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return Errno(EINVAL);
  }
  sockaddr_storage out{};
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return out;
}

// Connections the kernel completes and queues for accept(). More than the kernel allows is
// cut to net.core.somaxconn (4096 by default since Linux 5.4). With 1024, as before, a burst of
// new connections (a campaign system opening thousands at once, or spate's own deliveries to
// one host after a restart) overflowed the queue: the kernel then drops the SYN, or the ACK of
// a handshake the client already thinks complete, and that client waits for a greeting until
// its timeout (5 minutes for a 220, RFC 5321 §4.5.3.2).
constexpr int kListenBacklog = 65535;

Result<int> Listen(const sockaddr_storage& addr, socklen_t len, bool reuse_port) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return Errno(errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port)
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) < 0 ||
      listen(fd, kListenBacklog) < 0) {
    int err = errno;
    close(fd);
    return Errno(err);
  }
  return fd;
}

std::string FormatAddress(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    std::string out = host;
    out.append(":").append(std::to_string(port));
    return out;
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  // Appended, not "[" + ... + "]:": GCC 12 at -O3 sees a false -Wrestrict in that chain.
  std::string out = "[";
  out.append(host).append("]:").append(std::to_string(port));
  return out;
}

int LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0)
    return -1;
  if (addr.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

}  // namespace spate
