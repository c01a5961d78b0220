// core/server/internal/server_connection.cc
//
// One submission client's glue: socket, TLS, session and timers (see server_connection.h).
#include "core/server/internal/server_connection.h"

#include <algorithm>
#include <chrono>

#include <openssl/rand.h>

#include "core/check.h"
#include "core/log.h"
#include "core/proxy/proxy_protocol.h"
#include "core/server/admission.h"
#include "core/server/submission.h"
#include "core/tls/tls.h"
#include "core/wipe.h"

namespace spate::server {

namespace {
using Clock = ServerConnection::Clock;

// How often, at most, a connection in the data phase looks at its data rate again.
constexpr auto kDataRateRecheck = std::chrono::seconds(1);
// How long a load balancer's connection may take to send its PROXY header.
constexpr auto kProxyHeaderTimeout = std::chrono::seconds(10);

template <typename D>
Clock::duration ToClock(D d) {
  return std::chrono::duration_cast<Clock::duration>(d);
}
}  // namespace

ServerConnection::ServerConnection(SubmissionServer& server, int fd, uint64_t id,
                                   const sockaddr_storage& peer, bool implicit_tls, bool proxied)
    : Connection(server.reactor_, fd),
      server_(server),
      id_(id),
      implicit_tls_(implicit_tls),
      awaiting_proxy_(proxied),
      counted_(!proxied),
      client_address_(ClientAddress(peer)),
      client_key_(ClientKey(peer)),
      session_(SessionOptions(server, peer, implicit_tls, client_address_)) {}

ServerConnection::~ServerConnection() = default;

void ServerConnection::Start() {
  SetOutputLimit(kMaxQueuedOutput, &server_.stats_.output_paused);
  server_.conns_.emplace(id_, this);
  server_.stats_.connections_accepted.Add();
  server_.stats_.connections_inbound.Add(1);
  last_activity_ = reactor().now();
  if (!awaiting_proxy_)
    Begin();
  StartReading();
  // A balancer sends its header at once: one that does not is not given the command timeout.
  ArmTimer(last_activity_ +
           (awaiting_proxy_ ? std::min(Timeout(), ToClock(kProxyHeaderTimeout)) : Timeout()));
}

void ServerConnection::Begin() {
  if (implicit_tls_) {
    StartTls();  // the session starts, and greets, once the handshake is done
  } else if (server_.options_.greeting_delay.count() > 0) {
    // Input meanwhile is read and only noted by the session (a pregreet): 554 at Greet().
    greeting_timer_ =
        reactor().AddTimer(last_activity_ + ToClock(server_.options_.greeting_delay), [this] {
          greeting_timer_ = {};
          Greet();
        });
  } else {
    Greet();
  }
}

bool ServerConnection::ReadProxyHeader(std::string_view data, std::string* rest) {
  proxy_buffer_.append(data);
  proxy::Header header;
  std::string error;
  const proxy::Status status = proxy::Parse(proxy_buffer_, &header, &error);
  if (status == proxy::Status::kNeedMore)
    return true;
  if (status == proxy::Status::kInvalid) {
    server_.stats_.proxy_header_errors.Add();
    SPATE_LOG(kInfo, "proxy: %s: %s; closed", client_address_.c_str(), error.c_str());
    Abort();
    return false;
  }
  awaiting_proxy_ = false;
  *rest = proxy_buffer_.substr(header.length);
  std::string().swap(proxy_buffer_);
  if (!header.local) {
    // The client the balancer accepted: it is the client from here on, for everything.
    client_address_ = ClientAddress(header.source);
    client_key_ = ClientKey(header.source);
    if (!server_.clients_->TryAdd(client_key_)) {
      server_.stats_.connections_refused.Add();
      if (!implicit_tls_)  // as at accept: on the implicit TLS port it is just closed
        Write("421 4.7.0 " + server_.options_.hostname +
              " Too many connections from your address\r\n");
      Close();
      return false;
    }
    counted_ = true;
    session_ =
        smtp::ServerSession(SessionOptions(server_, header.source, implicit_tls_, client_address_));
  }
  // LOCAL (the balancer's health check) or UNKNOWN: the balancer's own connection, as it is.
  Begin();
  return true;
}

void ServerConnection::Committed(Result<std::string> queue_id) {
  session_.SetNow(reactor().wall_now());
  session_.SetIntake(server_.store_.intake());
  session_.OnCommitted(std::move(queue_id));
  Process();
}

void ServerConnection::OnAuthVerdict(bool ok, bool locked_out) {
  session_.SetNow(reactor().wall_now());
  session_.SetIntake(server_.store_.intake());
  if (locked_out) {
    session_.OnAuthResult(false);  // 535 5.7.8 first, then the 421
    Flush();
    TooManyFailures();
    return;
  }
  session_.OnAuthResult(ok);
  Process();
}

void ServerConnection::OnData(std::string_view data) noexcept {
  last_activity_ = reactor().now();
  if (awaiting_proxy_) {
    std::string rest;
    if (!ReadProxyHeader(data, &rest) || awaiting_proxy_ || rest.empty())
      return;
    return OnData(rest);  // the client's first bytes, behind the header
  }
  if (!tls_) {
    FeedSession(data);
    return;
  }
  std::string plain;
  Result<void> fed = tls_->FeedCiphertext(data, &plain);
  SendCiphertext();  // handshake messages, or the alert that ends a failed one
  if (!fed) {
    SPATE_LOG(kDebug, "tls: client=%s: %s", client_address_.c_str(), tls_->failure().c_str());
    Close();
    return;
  }
  if (!tls_reported_ && tls_->handshake_done()) {
    tls_reported_ = true;
    reactor().CancelTimer(handshake_timer_);
    session_.SetNow(reactor().wall_now());
    session_.SetIntake(server_.store_.intake());
    session_.OnTlsStarted(smtp::TlsInfo{tls_->version(), tls_->cipher()});
    if (implicit_tls_)
      session_.Start();  // the greeting, now inside TLS
    Flush();
  }
  if (!plain.empty()) {
    FeedSession(plain);
    if (session_.TakeSecretSeen())
      Wipe(plain);  // it held AUTH credentials (the session wiped its own copies)
  } else {
    Process();
  }
  // close_notify: the client is done, as with a TCP FIN.
  if (tls_ && tls_->peer_closed() && !closing())
    CloseGracefully();
}

void ServerConnection::OnClosed(int /*error*/) noexcept {
  reactor().CancelTimer(timer_);
  reactor().CancelTimer(handshake_timer_);
  reactor().CancelTimer(greeting_timer_);
  reactor().CancelTimer(rate_timer_);
  server_.conns_.erase(id_);
  if (counted_)
    server_.clients_->Remove(client_key_);
  server_.stats_.connections_inbound.Add(-1);
}

smtp::ServerSession::Options ServerConnection::SessionOptions(const SubmissionServer& server,
                                                              const sockaddr_storage& peer,
                                                              bool implicit_tls,
                                                              const std::string& client_address) {
  const Options& c = server.options_;
  smtp::ServerSession::Options o;
  o.hostname = c.hostname;
  o.max_message_size = c.max_message_size;
  o.max_recipients = c.max_recipients;
  o.starttls = server.security_.tls != nullptr && !implicit_tls;
  o.implicit_tls = implicit_tls;
  o.auth = server.security_.verifier != nullptr;
  o.auth_plaintext = c.auth_plaintext;
  for (const Network& n : c.relay_networks)
    o.client_may_relay = o.client_may_relay || n.Contains(peer);
  o.local_domains = c.local_domains;
  o.dsn = c.dsn;
  if (c.suppression != nullptr && c.suppression->enabled()) {
    const SubmissionServer* s = &server;
    o.rcpt_check = [s](std::string_view mail_from, std::string_view mailbox) {
      return s->CheckSuppressed(mail_from, mailbox);
    };
  }
  o.client_address = client_address;
  o.bare_lf = c.bare_lf;
  o.nul = c.nul;
  // Unique Message-IDs across sessions and shards: 16 random letters and digits.
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  uint8_t random[16];
  RAND_bytes(random, sizeof random);
  for (uint8_t r : random)
    o.id_nonce += kAlphabet[r % 36];
  return o;
}

Clock::duration ServerConnection::Timeout() const {
  return std::chrono::duration_cast<Clock::duration>(server_.options_.command_timeout);
}

void ServerConnection::Greet() {
  session_.SetNow(reactor().wall_now());
  session_.SetIntake(server_.store_.intake());
  session_.Start();
  Flush();
  if (session_.closed()) {
    SPATE_LOG(kInfo, "pregreet: client=%s talked before the greeting; closing",
              client_address_.c_str());
    CloseGracefully();
  }
}

void ServerConnection::FeedSession(std::string_view plain) {
  session_.SetNow(reactor().wall_now());
  session_.SetIntake(server_.store_.intake());
  // The whole chunk goes in at once: if it holds STARTTLS, the session drops whatever follows
  // it (CVE-2011-0411), so nothing of this chunk is left to leak into the TLS stream.
  session_.Feed(plain);
  TrackDataPhase(plain.size());
  Process();
}

// [server] min_data_rate. Called after every step of the session: the data phase may also
// begin in input that was held back and resumed by a commit or an AUTH verdict. It is timed
// from the chunk that starts it, and every chunk received in it counts (with the command that
// started it: a line, next to the minimum).
void ServerConnection::TrackDataPhase(size_t octets) {
  if (server_.options_.min_data_rate == 0)
    return;
  const bool in_data = session_.in_data();
  if (in_data && !data_phase_) {
    data_started_ = reactor().now();
    data_octets_ = 0;
    ArmRateTimer(data_started_ + ToClock(server_.options_.data_rate_grace));
  } else if (!in_data && data_phase_) {
    reactor().CancelTimer(rate_timer_);
  }
  if (in_data || data_phase_)
    data_octets_ += octets;
  data_phase_ = in_data;
}

void ServerConnection::ArmRateTimer(Clock::time_point at) {
  rate_timer_ = reactor().AddTimer(at, [this] {
    rate_timer_ = {};
    CheckDataRate();
  });
}

// The average since the data phase began, after the grace. It can only fall under the minimum
// once the time passed exceeds octets / min_data_rate, so that is when to look again (at most
// once per kDataRateRecheck).
void ServerConnection::CheckDataRate() {
  if (!data_phase_ || closing())
    return;
  const Clock::time_point now = reactor().now();
  const double rate = static_cast<double>(server_.options_.min_data_rate);
  const Clock::duration earned = ToClock(Seconds(static_cast<double>(data_octets_) / rate));
  if (now - data_started_ <= earned) {
    ArmRateTimer(std::max(data_started_ + earned, now + kDataRateRecheck));
    return;
  }
  const double elapsed = std::chrono::duration<double>(now - data_started_).count();
  SPATE_LOG(kInfo, "data rate too low: client=%s %llu octets in %.1fs; closing",
            client_address_.c_str(), static_cast<unsigned long long>(data_octets_), elapsed);
  Flush();
  // RFC 5321 §3.8: a server that must end a session answers 421 and closes; RFC 3463 X.4.2
  // "bad connection".
  Write("421 4.4.2 " + server_.options_.hostname + " Error: data rate too low\r\n");
  CloseGracefully();
}

void ServerConnection::Process() {
  // The session pauses on AUTH until it has the verdict (OnAuthVerdict), so at most one is
  // out; the verdict may resume input that holds another AUTH.
  if (std::optional<smtp::AuthRequest> request = session_.TakeAuthRequest()) {
    if (!Authenticate(std::move(*request)))
      return;  // closing
  }
  TrackDataPhase(0);
  if (!tls_ && session_.tls_requested()) {
    Flush();  // "220 2.0.0 Ready to start TLS", in the clear
    if (server_.security_.tls == nullptr) {
      // The session only offers STARTTLS when told to; this is a broken invariant, not input.
      SPATE_LOG(kError, "session asked for TLS without a certificate; closing");
      Close();
      return;
    }
    StartTls();
  }
  if (session_.awaiting_commit()) {
    // Nothing more is read until the spool answers: what the client pipelined behind the
    // message waits in the kernel, not in our memory.
    PauseReading();
    server_.Commit(*this);
  } else if (session_.awaiting_auth()) {
    // The same while a verifier worker checks the password: input pipelined behind the AUTH
    // waits in the kernel.
    PauseReading();
  } else {
    ResumeReading();
  }
  Flush();
  if (session_.closed())
    CloseGracefully();
}

bool ServerConnection::Authenticate(smtp::AuthRequest&& request) {
  if (server_.auth_failures_->Blocked(client_key_, reactor().now())) {
    Wipe(request.password);
    TooManyFailures();
    return false;
  }
  server_.VerifyAuth(*this, std::move(request));
  return true;
}

void ServerConnection::TooManyFailures() {
  SPATE_LOG(kWarn, "auth: too many failures from %s; closing", client_key_.c_str());
  Flush();
  Write("421 4.7.0 " + server_.options_.hostname + " Too many authentication failures\r\n");
  CloseGracefully();
}

void ServerConnection::StartTls() {
  tls_ = std::make_unique<tls::TlsSession>(*server_.security_.tls);
  auto timeout =
      std::chrono::duration_cast<Clock::duration>(server_.options_.tls_handshake_timeout);
  handshake_timer_ = reactor().AddTimer(reactor().now() + timeout, [this] {
    handshake_timer_ = {};
    SPATE_LOG(kDebug, "tls: client=%s: handshake timed out", client_address_.c_str());
    Abort();
  });
}

void ServerConnection::Flush() {
  if (tls_ && !tls_->handshake_done())
    return;
  Write(session_.TakeOutput());
}

void ServerConnection::Write(std::string out) {
  if (out.empty())
    return;
  if (tls_) {
    if (!tls_->Write(out))
      return;  // failed: the connection is closing
    SendCiphertext();
  } else {
    Send(std::move(out));
  }
}

void ServerConnection::SendCiphertext() {
  std::string out = tls_->TakeCiphertext();
  if (!out.empty())
    Send(std::move(out));
}

void ServerConnection::CloseGracefully() {
  if (tls_ && tls_->handshake_done()) {
    tls_->Shutdown();
    SendCiphertext();
  }
  Close();
}

void ServerConnection::ArmTimer(Clock::time_point at) {
  timer_ = reactor().AddTimer(at, [this] {
    timer_ = {};
    if (awaiting_proxy_) {
      server_.stats_.proxy_header_errors.Add();
      SPATE_LOG(kInfo, "proxy: %s: no PROXY header in time; closed", client_address_.c_str());
      Abort();
      return;
    }
    Clock::time_point due = last_activity_ + Timeout();
    // A client waiting for its commit, or for its AUTH verdict, is not idle.
    if (reactor().now() < due || session_.awaiting_commit() || session_.awaiting_auth()) {
      return ArmTimer(std::max(due, reactor().now() + std::chrono::seconds(1)));
    }
    session_.OnTimeout();
    Flush();
    CloseGracefully();
  });
}

}  // namespace spate::server
