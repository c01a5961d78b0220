// core/server/internal/server_connection.h
//
// ServerConnection is one submission client: the glue between its socket (core/connection.h),
// its smtp::ServerSession, a tls::TlsSession once STARTTLS or implicit TLS starts, and the
// SubmissionServer that accepted it (store, verifier, admission tables). The session is sans-I/O;
// this class runs what it cannot: the timers ([server] command_timeout, greeting_delay,
// min_data_rate; [tls] handshake_timeout), the pauses (nothing is read while a commit or an AUTH
// verdict is outstanding: what the client pipelined waits in the kernel), and the 421s the
// session has no way to say. What each limit means for a client is in core/server/submission.h.
// Private to SubmissionServer (core/server/submission.cc).
// Lifetime: made with new at accept; it owns itself from Start() (Connection's rule) and is in
// the server's connection table, by id, from Start() to OnClosed(). Anything that comes back
// later (a commit, an AUTH verdict) looks it up by id: it may be gone.
// Threading: lives on its server's shard.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <sys/socket.h>

#include "core/connection.h"
#include "core/reactor.h"
#include "core/result.h"
#include "core/smtp/server_session.h"

namespace spate::tls {
class TlsSession;
}  // namespace spate::tls

namespace spate::server {

class SubmissionServer;

class ServerConnection final : public Connection {
 public:
  using Clock = Reactor::Clock;

  // `fd` is an accepted socket, `id` its key in the server's table, `peer` its address. The
  // client's connection is already counted in the server's ClientConnections; OnClosed() takes
  // it off. `proxied`: `peer` is a load balancer, and the connection begins with a PROXY
  // header naming the client, who is counted (and may be refused) when it is read.
  ServerConnection(SubmissionServer& server, int fd, uint64_t id, const sockaddr_storage& peer,
                   bool implicit_tls, bool proxied = false);
  ~ServerConnection() override;

  // Enters the server's table and counters, greets (or waits for the greeting delay, or the TLS
  // handshake) and starts reading.
  void Start();

  // The store's answer for the message this connection handed over: its queue id, or an error.
  void Committed(Result<std::string> queue_id);

  // The verifier's verdict, back on this shard; a failure is already counted, and
  // `locked_out` says it reached [auth] max_failures.
  void OnAuthVerdict(bool ok, bool locked_out);

  smtp::ServerSession& session() { return session_; }
  uint64_t id() const { return id_; }
  const std::string& client_address() const { return client_address_; }
  const std::string& client_key() const { return client_key_; }

 protected:
  void OnData(std::string_view data) noexcept override;
  void OnClosed(int error) noexcept override;

 private:
  static smtp::ServerSession::Options SessionOptions(const SubmissionServer& server,
                                                     const sockaddr_storage& peer,
                                                     bool implicit_tls,
                                                     const std::string& client_address);

  Clock::duration Timeout() const;
  // Past the PROXY header (if any): the TLS handshake of the implicit TLS port, or the greeting
  // (or its delay).
  void Begin();
  // The PROXY header's bytes; false when the connection is closing (a bad header, a client
  // over its limit).
  bool ReadProxyHeader(std::string_view data, std::string* rest);
  // The 220, or the 554 to a client that talked before it (then the connection closes).
  void Greet();
  void FeedSession(std::string_view plain);
  // [server] min_data_rate: notes whether the session is in a data phase and what it received.
  void TrackDataPhase(size_t octets);
  void ArmRateTimer(Clock::time_point at);
  void CheckDataRate();
  // After every step of the session: hands on what it yields (an AUTH request, a message to
  // commit, a STARTTLS), pauses or resumes reading, and sends its replies.
  void Process();
  // Hands one AUTH request to the verifier; the verdict arrives in OnAuthVerdict(). False when
  // the client is locked out and the connection is closing instead.
  bool Authenticate(smtp::AuthRequest&& request);
  // The session has no way to say this 421 itself (its 421s are for errors and timeouts), so
  // the glue writes it, after whatever the session had queued, and closes.
  void TooManyFailures();
  void StartTls();
  // Replies go out through TLS once it is on; none are taken while its handshake runs.
  void Flush();
  void Write(std::string out);
  void SendCiphertext();
  // Sends what is queued, with close_notify under TLS, then closes.
  void CloseGracefully();
  // [server] command_timeout, from the last input.
  void ArmTimer(Clock::time_point at);

  SubmissionServer& server_;
  uint64_t id_;
  bool implicit_tls_;
  bool awaiting_proxy_;         // no PROXY header read yet (proxied connections)
  bool counted_;                // client_key_ is counted in the server's ClientConnections
  std::string proxy_buffer_;    // the header so far
  std::string client_address_;  // "192.0.2.1" or "IPv6:2001:db8::1"
  std::string client_key_;      // where AUTH failures and connections are counted
  smtp::ServerSession session_;
  std::unique_ptr<tls::TlsSession> tls_;  // set from STARTTLS (or accept, implicit TLS) on
  bool tls_reported_ = false;             // OnTlsStarted() was called
  Clock::time_point last_activity_{};
  Reactor::TimerId timer_;
  Reactor::TimerId handshake_timer_;
  Reactor::TimerId greeting_timer_;  // [server] greeting_delay
  // [server] min_data_rate: whether the session is in a data phase, when it began, and what it
  // received since.
  bool data_phase_ = false;
  Clock::time_point data_started_{};
  uint64_t data_octets_ = 0;
  Reactor::TimerId rate_timer_;
};

}  // namespace spate::server
