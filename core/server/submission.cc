#include "core/server/submission.h"

#include <algorithm>
#include <cstring>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/auth/verifier.h"
#include "core/check.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/smtp/server_session.h"
#include "core/tls/tls.h"

namespace spate::server {

namespace {
using Clock = Reactor::Clock;

// A peer address as the session wants it for Received: (RFC 5321 §4.1.3): "192.0.2.1" or
// "IPv6:2001:db8::1". An IPv4-mapped IPv6 address is shown as IPv4.
std::string ClientAddress(const sockaddr_storage& peer) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, buf, sizeof buf);
    return buf;
  }
  if (peer.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      inet_ntop(AF_INET, a.s6_addr + 12, buf, sizeof buf);
      return buf;
    }
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
    return std::string("IPv6:") + buf;
  }
  return "unknown";
}

// The key a client is counted under, for AUTH failures and connection limits: the IPv4
// address, or the /64 of an IPv6 address (one IPv6 host usually has a whole /64 to pick
// addresses from).
std::string ClientKey(const sockaddr_storage& peer) {
  if (peer.ss_family == AF_INET6) {
    in6_addr a = reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(&a)) {
      std::memset(a.s6_addr + 8, 0, 8);
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(AF_INET6, &a, buf, sizeof buf);
      return std::string(buf) + "/64";
    }
  }
  return ClientAddress(peer);
}

// Remote input for a log line: printable ASCII only, bounded.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

// How often, at most, a connection in the data phase looks at its data rate again.
constexpr auto kDataRateRecheck = std::chrono::seconds(1);

template <typename D>
Clock::duration ToClock(D d) {
  return std::chrono::duration_cast<Clock::duration>(d);
}
}  // namespace

bool ClientConnections::TryAdd(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  unsigned& open = open_[client];
  // Refused only with open > 0: an entry is never left at 0.
  if (max_per_client_ != 0 && open >= max_per_client_)
    return false;
  ++open;
  return true;
}

void ClientConnections::Remove(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(client);
  SPATE_CHECK(it != open_.end() && it->second > 0);
  if (--it->second == 0)
    open_.erase(it);
}

AuthFailures::AuthFailures(unsigned max_failures, Clock::duration window, size_t max_entries)
    : max_failures_(max_failures), window_(window), max_entries_(max_entries) {}

bool AuthFailures::Blocked(const std::string& client, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(client);
  if (it == failures_.end())
    return false;
  if (it->second.expires <= now) {
    failures_.erase(it);
    return false;
  }
  return it->second.count >= max_failures_;
}

bool AuthFailures::RecordFailure(const std::string& client, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failures_.size() >= max_entries_ && failures_.count(client) == 0) {
    std::erase_if(failures_, [now](const auto& e) { return e.second.expires <= now; });
    if (failures_.size() >= max_entries_)
      failures_.erase(failures_.begin());
  }
  Entry& f = failures_[client];
  if (f.expires <= now)
    f.count = 0;  // the earlier failures have aged out
  ++f.count;
  // Shards read their reactor's clock once per loop turn, so `now` may run a little behind
  // another shard's: the later expiry wins.
  f.expires = std::max(f.expires, now + window_);
  return f.count >= max_failures_;
}

size_t AuthFailures::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_.size();
}

class ServerConnection final : public Connection {
 public:
  ServerConnection(SubmissionServer& server, int fd, uint64_t id, const sockaddr_storage& peer,
                   bool implicit_tls)
      : Connection(server.shard_.reactor(), fd),
        server_(server),
        id_(id),
        implicit_tls_(implicit_tls),
        client_address_(ClientAddress(peer)),
        client_key_(ClientKey(peer)),
        session_(SessionOptions(server, peer, implicit_tls, client_address_)) {}

  void Start() {
    server_.conns_.emplace(id_, this);
    server_.stats_.connections_accepted.Add();
    server_.stats_.connections_inbound.Add(1);
    last_activity_ = reactor().now();
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
    StartReading();
    ArmTimer(last_activity_ + Timeout());
  }

  // The spool's answer for the message this connection handed over.
  void Committed(Result<std::string> queue_id) {
    session_.SetNow(reactor().wall_now());
    session_.OnCommitted(std::move(queue_id));
    Process();
  }

  // The verifier's verdict, back on this shard; a failure is already counted, and
  // `locked_out` says it reached [auth] max_failures.
  void OnAuthVerdict(bool ok, bool locked_out) {
    session_.SetNow(reactor().wall_now());
    if (locked_out) {
      session_.OnAuthResult(false);  // 535 5.7.8 first, then the 421
      Flush();
      TooManyFailures();
      return;
    }
    session_.OnAuthResult(ok);
    Process();
  }

  smtp::ServerSession& session() { return session_; }
  uint64_t id() const { return id_; }
  const std::string& client_address() const { return client_address_; }
  const std::string& client_key() const { return client_key_; }

 protected:
  void OnData(std::string_view data) noexcept override {
    last_activity_ = reactor().now();
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
      session_.OnTlsStarted(smtp::TlsInfo{tls_->version(), tls_->cipher()});
      if (implicit_tls_)
        session_.Start();  // the greeting, now inside TLS
      Flush();
    }
    if (!plain.empty()) {
      FeedSession(plain);
    } else {
      Process();
    }
    // close_notify: the client is done, as with a TCP FIN.
    if (tls_ && tls_->peer_closed() && !closing())
      CloseGracefully();
  }

  void OnClosed(int /*error*/) noexcept override {
    reactor().CancelTimer(timer_);
    reactor().CancelTimer(handshake_timer_);
    reactor().CancelTimer(greeting_timer_);
    reactor().CancelTimer(rate_timer_);
    server_.conns_.erase(id_);
    server_.clients_->Remove(client_key_);
    server_.stats_.connections_inbound.Add(-1);
  }

 private:
  static smtp::ServerSession::Options SessionOptions(const SubmissionServer& server,
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
    o.client_address = client_address;
    // Unique Message-IDs across sessions and shards: 16 random letters and digits.
    static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t random[16];
    RAND_bytes(random, sizeof random);
    for (uint8_t r : random)
      o.id_nonce += kAlphabet[r % 36];
    return o;
  }

  Clock::duration Timeout() const {
    return std::chrono::duration_cast<Clock::duration>(server_.options_.command_timeout);
  }

  // The 220, or the 554 to a client that talked before it (then the connection closes).
  void Greet() {
    session_.SetNow(reactor().wall_now());
    session_.Start();
    Flush();
    if (session_.closed()) {
      SPATE_LOG(kInfo, "pregreet: client=%s talked before the greeting; closing",
                client_address_.c_str());
      CloseGracefully();
    }
  }

  void FeedSession(std::string_view plain) {
    session_.SetNow(reactor().wall_now());
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
  void TrackDataPhase(size_t octets) {
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

  void ArmRateTimer(Clock::time_point at) {
    rate_timer_ = reactor().AddTimer(at, [this] {
      rate_timer_ = {};
      CheckDataRate();
    });
  }

  // The average since the data phase began, after the grace. It can only fall under the minimum
  // once the time passed exceeds octets / min_data_rate, so that is when to look again (at most
  // once per kDataRateRecheck).
  void CheckDataRate() {
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

  void Process() {
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

  // Hands one AUTH request to the verifier; the verdict arrives in OnAuthVerdict(). False when
  // the client is locked out and the connection is closing instead.
  bool Authenticate(smtp::AuthRequest&& request) {
    if (server_.auth_failures_->Blocked(client_key_, reactor().now())) {
      TooManyFailures();
      return false;
    }
    server_.VerifyAuth(*this, std::move(request));
    return true;
  }

  // The session has no way to say this 421 itself (its 421s are for errors and timeouts), so
  // the glue writes it, after whatever the session had queued, and closes.
  void TooManyFailures() {
    SPATE_LOG(kWarn, "auth: too many failures from %s; closing", client_key_.c_str());
    Flush();
    Write("421 4.7.0 " + server_.options_.hostname + " Too many authentication failures\r\n");
    CloseGracefully();
  }

  void StartTls() {
    tls_ = std::make_unique<tls::TlsSession>(*server_.security_.tls);
    auto timeout =
        std::chrono::duration_cast<Clock::duration>(server_.options_.tls_handshake_timeout);
    handshake_timer_ = reactor().AddTimer(reactor().now() + timeout, [this] {
      handshake_timer_ = {};
      SPATE_LOG(kDebug, "tls: client=%s: handshake timed out", client_address_.c_str());
      Abort();
    });
  }

  // Replies go out through TLS once it is on; none are taken while its handshake runs.
  void Flush() {
    if (tls_ && !tls_->handshake_done())
      return;
    Write(session_.TakeOutput());
  }

  void Write(std::string out) {
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

  void SendCiphertext() {
    std::string out = tls_->TakeCiphertext();
    if (!out.empty())
      Send(std::move(out));
  }

  // Sends what is queued, with close_notify under TLS, then closes.
  void CloseGracefully() {
    if (tls_ && tls_->handshake_done()) {
      tls_->Shutdown();
      SendCiphertext();
    }
    Close();
  }

  void ArmTimer(Clock::time_point at) {
    timer_ = reactor().AddTimer(at, [this] {
      timer_ = {};
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

  SubmissionServer& server_;
  uint64_t id_;
  bool implicit_tls_;
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

SubmissionServer::SubmissionServer(Shard& shard, const Options& options, MessageStore& store,
                                   Stats& stats, int listen_fd, Accepted on_accepted,
                                   int implicit_tls_fd, Security security)
    : shard_(shard),
      options_(options),
      store_(store),
      stats_(stats),
      on_accepted_(std::move(on_accepted)),
      security_(security),
      max_connections_((options.max_connections + shard.count() - 1) / shard.count()),
      clients_(security.clients),
      auth_failures_(security.auth_failures) {
  if (clients_ == nullptr) {
    own_clients_ = std::make_unique<ClientConnections>(options.max_connections_per_client);
    clients_ = own_clients_.get();
  }
  if (auth_failures_ == nullptr) {
    own_auth_failures_ = std::make_unique<AuthFailures>(options.auth_max_failures,
                                                        ToClock(options.auth_failure_window));
    auth_failures_ = own_auth_failures_.get();
  }
  listeners_[0].fd = listen_fd;
  listeners_[1].fd = implicit_tls_fd;
  listeners_[1].implicit_tls = true;
  SPATE_CHECK(implicit_tls_fd < 0 || security_.tls != nullptr);
}

SubmissionServer::~SubmissionServer() {
  for (Listener& l : listeners_) {
    if (l.fd >= 0)
      close(l.fd);
  }
}

void SubmissionServer::Start() {
  for (Listener& l : listeners_) {
    if (l.fd >= 0)
      ArmAccept(l);
  }
}

void SubmissionServer::ArmAccept(Listener& listener) {
  if (shutting_down_)
    return;
  listener.accepting = true;
  listener.op = shard_.reactor().Accept(listener.fd, [this, &listener](int res) {
    listener.accepting = false;
    if (shutting_down_) {
      if (res >= 0)
        close(res);
      return;
    }
    if (res >= 0) {
      OnAccept(listener, res);
    } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
      SPATE_LOG(kWarn, "accept: %s", std::strerror(-res));
    }
    ArmAccept(listener);
  });
}

void SubmissionServer::OnAccept(Listener& listener, int fd) {
  // The reactor's accept gives no address: ask the socket. A client already gone has none.
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    close(fd);
    return;
  }
  const std::string client = ClientKey(peer);
  if (conns_.size() >= max_connections_) {
    Refuse(listener, fd, client, "Too many connections");
    return;
  }
  if (!clients_->TryAdd(client)) {
    Refuse(listener, fd, client, "Too many connections from your address");
    return;
  }
  SPATE_LOG(kDebug, "accepted a connection from %s on shard %u", client.c_str(),
            static_cast<unsigned>(shard_.id()));
  // From here the connection owns the count: its OnClosed() removes it.
  auto* conn = new ServerConnection(*this, fd, next_conn_id_++, peer, listener.implicit_tls);
  conn->Start();
}

void SubmissionServer::Refuse(const Listener& listener, int fd, const std::string& client,
                              std::string_view why) {
  stats_.connections_refused.Add();
  // Debug only: a flood of these must not flood the log (the metric counts them).
  SPATE_LOG(kDebug, "refused a connection from %s: %.*s", client.c_str(),
            static_cast<int>(why.size()), why.data());
  if (!listener.implicit_tls) {
    // Straight to the socket, not through the ring: a fresh socket's send buffer is empty, so
    // one short line goes out at once or the client is already gone (then it gets nothing, on
    // purpose). MSG_DONTWAIT: never blocks the reactor. close() sends it, then FIN.
    std::string line = "421 4.7.0 " + options_.hostname + " " + std::string(why) + "\r\n";
    ssize_t sent = send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)sent;
  }
  close(fd);
}

void SubmissionServer::VerifyAuth(ServerConnection& conn, smtp::AuthRequest&& request) {
  // No proxy authorization (RFC 4616 §2): an authzid may only name the user itself. The
  // password is checked all the same, so the verdict takes as long either way.
  const bool authzid_ok = request.authzid.empty() || request.authzid == request.user;
  std::string user = request.user;
  security_.verifier->Verify(
      std::move(request.user), std::move(request.password),
      [this, shard = &shard_, conn_id = conn.id(), authzid_ok, user = std::move(user),
       mechanism = std::move(request.mechanism), address = conn.client_address(),
       key = conn.client_key()](bool verified) {
        // On a verifier worker: carry the verdict back to the connection's shard.
        shard->Post([this, conn_id, ok = verified && authzid_ok, user, mechanism, address, key] {
          SPATE_LOG(kInfo, "auth %s: mechanism=%s user=%s client=%s shard=%u", ok ? "ok" : "failed",
                    Printable(mechanism).c_str(), Printable(user).c_str(), address.c_str(),
                    static_cast<unsigned>(shard_.id()));
          // Counted even when the connection has gone meanwhile: closing does not undo a try.
          const bool locked_out = !ok && auth_failures_->RecordFailure(key, shard_.reactor().now());
          auto it = conns_.find(conn_id);
          if (it != conns_.end())
            it->second->OnAuthVerdict(ok, locked_out);
        });
      });
}

queue::NewMessage ToSpoolMessage(smtp::ReceivedMessage&& received) {
  queue::NewMessage m;
  m.mail_from = std::move(received.mail_from);
  m.rcpt_to = std::move(received.rcpt_to);
  m.body = std::move(received.body);
  m.body_8bit = received.body_8bit;
  m.smtputf8 = received.smtputf8;
  switch (received.ret) {
    case smtp::ReceivedMessage::Ret::kUnset:
      m.ret = 0;
      break;
    case smtp::ReceivedMessage::Ret::kFull:
      m.ret = 1;
      break;
    case smtp::ReceivedMessage::Ret::kHdrs:
      m.ret = 2;
      break;
  }
  m.envid = std::move(received.envid);
  m.auth_user = std::move(received.auth_user);
  // Only messages that carried any DSN parameter store them per recipient.
  bool any = std::any_of(received.dsn.begin(), received.dsn.end(), [](const smtp::DsnRecipient& d) {
    return d.notify != 0 || !d.orcpt.empty();
  });
  if (any) {
    m.dsn.reserve(received.dsn.size());
    for (smtp::DsnRecipient& d : received.dsn)
      m.dsn.push_back({d.notify, std::move(d.orcpt)});
  }
  return m;
}

void SubmissionServer::Commit(ServerConnection& conn) {
  std::optional<smtp::ReceivedMessage> received = conn.session().TakeMessage();
  if (!received)
    return;  // already handed over; waiting for its commit
  queue::NewMessage message = ToSpoolMessage(std::move(*received));
  uint64_t conn_id = conn.id();
  Shard* shard = &shard_;
  store_.Accept(std::move(message),
                [this, shard, conn_id](Result<queue::MessageId> id, queue::NewMessage&& stored) {
                  // On the store's thread (the spool's commit thread): the durable message goes on
                  // to delivery from here, and the outcome back to the connection's shard for its
                  // reply.
                  const size_t recipients = stored.rcpt_to.size();
                  if (id && on_accepted_)
                    on_accepted_(*id, std::move(stored));
                  shard->Post([this, conn_id, id, recipients] {
                    auto it = conns_.find(conn_id);
                    if (!id) {
                      SPATE_LOG(kError, "spool commit failed: %s", id.error().message().c_str());
                      if (it != conns_.end())
                        it->second->Committed(Unexpected{id.error()});
                      return;
                    }
                    stats_.messages_received.Add();
                    stats_.recipients_received.Add(recipients);
                    if (it != conns_.end())
                      it->second->Committed(queue::FormatId(*id));
                  });
                });
}

void SubmissionServer::Shutdown() noexcept {
  shutting_down_ = true;
  for (Listener& l : listeners_) {
    if (l.accepting)
      shard_.reactor().Cancel(l.op);
  }
  // Sessions end now. A message already handed to the spool is committed and delivered after
  // the next start; one still being received was never acknowledged, so the client keeps it.
  std::vector<ServerConnection*> open;
  for (auto& [id, c] : conns_)
    open.push_back(c);
  for (ServerConnection* c : open)
    c->Abort();
}

}  // namespace spate::server
