// core/connection.h
//
// Connection is one TCP socket on a shard: it keeps one recv armed (into the reactor's pooled
// buffers, so an idle connection costs no receive buffer), queues outgoing bytes with at
// most one send in flight, and destroys itself once it is closed and no operation of its own is
// left in the ring (the buffers those operations name are its members). Subclasses are the
// submission server's and the delivery client's connections; they see bytes, never the ring.
//
// Lifetime: heap-allocated with new, owned by itself from then on. After Close() or a peer close
// the object may be deleted at any later completion; OnClosed() is the last call it receives.
// Threading: lives on the shard whose reactor it was given.
#pragma once

#include <string>
#include <string_view>

#include <netinet/in.h>
#include <sys/socket.h>

#include "core/counter.h"
#include "core/reactor.h"

namespace spate {

class Connection {
 public:
  Connection(Reactor& reactor, int fd);
  virtual ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts the read loop: OnData() for every chunk received.
  void StartReading();
  // Stops asking for input (backpressure: the kernel's buffer and then TCP push back on the
  // peer) until ResumeReading(). A recv already in the ring still delivers its chunk.
  void PauseReading() { paused_ = true; }
  void ResumeReading();
  // Output backpressure: while more than `bytes` of output is queued (the peer does not read
  // its replies), no input is read either, so a peer that pipelines without reading cannot grow
  // our memory; reading resumes once the output has drained to half of it. `paused`, when set,
  // counts each stop. 0: no bound (the default). Not for a client connection whose peer applies
  // the same rule: two sides that both wait for the other to read would never move.
  void SetOutputLimit(size_t bytes, Counter* paused = nullptr) {
    output_limit_ = bytes;
    output_paused_counter_ = paused;
  }
  bool output_blocked() const { return output_blocked_; }
  // Connects the socket (non-blocking, through the ring); OnConnected() follows. `addr` is
  // copied, so the caller's may go.
  void Connect(const sockaddr_storage& addr, socklen_t len);
  // Queues bytes; sends at once when no send is in flight.
  void Send(std::string_view bytes);
  void Send(std::string&& bytes);
  // Graceful: sends what is queued, then shuts the socket down. Idempotent. `this` may be
  // deleted before Close() returns when called outside a callback: do not touch it after.
  void Close();
  // Immediate: drops queued output. Idempotent. Same lifetime rule as Close().
  void Abort();

  int fd() const { return fd_; }
  bool closing() const { return closing_; }
  size_t queued_output() const { return out_.size() + pending_.size() - out_offset_; }
  // Heap bytes the output buffers hold: 0 once everything queued reached the kernel.
  size_t output_buffer_bytes() const;

 protected:
  Reactor& reactor() { return reactor_; }
  // Called with each chunk of input; `data` is valid for the call only.
  virtual void OnData(std::string_view data) noexcept = 0;
  // Called once, when the connection is finished (peer closed, error, or after Close()); `error`
  // is 0 or an errno. The object is deleted right after this returns.
  virtual void OnClosed(int error) noexcept = 0;
  // All queued output reached the kernel.
  virtual void OnSendDrained() noexcept {}
  // The outcome of Connect(): 0 or an errno. On error, call Abort() (or Close()).
  virtual void OnConnected(int error) noexcept { (void)error; }

 private:
  void ArmRecv();
  void ArmSend();
  void Finish(int error);
  void MaybeDestroy();

  Reactor& reactor_;
  int fd_;
  std::string in_;  // receive buffer, only without the reactor's pooled buffers
  bool reading_ = false;
  std::string out_;  // the bytes of the send in flight, from out_offset_
  size_t out_offset_ = 0;
  std::string pending_;  // queued behind the send in flight
  bool send_in_flight_ = false;
  bool connect_in_flight_ = false;
  Reactor::OpId connect_op_ = 0;
  sockaddr_storage peer_{};
  bool recv_in_flight_ = false;
  bool paused_ = false;
  size_t output_limit_ = 0;  // SetOutputLimit(); 0: none
  Counter* output_paused_counter_ = nullptr;
  bool output_blocked_ = false;  // not reading: too much output queued
  int busy_ = 0;                 // > 0 while one of our callbacks runs: no self-deletion then
  bool closing_ = false;         // no more input wanted; shut down once output is sent
  bool finished_ = false;        // OnClosed() delivered
};

// Socket helpers (blocking-free syscalls only). Addresses are "host:port" with a numeric host or
// a name resolved at start-up, IPv4 or [IPv6].
Result<sockaddr_storage> ParseEndpoint(std::string_view endpoint, socklen_t* len);
Result<int> Listen(const sockaddr_storage& addr, socklen_t len, bool reuse_port);
std::string FormatAddress(const sockaddr_storage& addr);
// The bound port of a socket (for port 0 listeners).
int LocalPort(int fd);

}  // namespace spate
