// core/server/submission.h
//
// SubmissionServer is the submission port on one shard: it accepts on this shard's
// SO_REUSEPORT listening socket and runs one smtp::ServerSession per connection. A message
// whose data phase ends goes to the spool; only when its commit batch is durable does the
// session get its queue id and the client its 250 (core/smtp/server_session.h). The message is
// handed on with `on_accepted` right there, on the spool's commit thread (the delivery
// Dispatcher posts it to the shards that own its domains), and the 250 is posted back here.
//
// A commit that completes after its client went away is still handed on: it is durable, so it
// is delivered (the client, lacking a 250, may send it again: at-least-once).
//
// TLS and AUTH are glue here; the session decides what the protocol allows:
//  - STARTTLS (RFC 3207): once the session has queued its 220 (tls_requested()), that reply goes
//    out in the clear and every later byte goes through a tls::TlsSession; what the client sent
//    behind STARTTLS in the same chunk was already dropped by the session (CVE-2011-0411). A
//    handshake that fails or is not done within [tls] handshake_timeout closes the connection.
//  - Implicit TLS (RFC 8314): a second listener whose connections run the handshake first; the
//    greeting is sent once it is done.
//  - AUTH (RFC 4954): the session yields the credentials and pauses; the connection stops
//    reading and hands them to auth::Verifier, whose worker computes the PBKDF2 off this
//    reactor and posts the verdict back here; the connection, looked up by id (it may be gone),
//    gives it to the session and reads again. Failures are counted per client address in one
//    table shared by all shards (AuthFailures, core/server/admission.h), since SO_REUSEPORT
//    spreads one client's connections over the shards: at [auth] max_failures in total the
//    client gets 421 4.7.0 and is disconnected, and later AUTH from that address get the same
//    until the failures age out ([auth] failure_window). A failure is counted even when its
//    connection closed while it was being verified.
//  - Relay control: the peer address (getpeername) against [server] relay_networks.
//
// Limits against clients that hold resources (RFC 5321 §4.5.3 sets minimums, not maximums):
//  - Connections, at accept, before any session exists: over [server] max_connections (each
//    shard takes ceil(max_connections / shards) and counts alone) a client gets "421 4.7.0
//    <hostname> Too many connections"; over max_connections_per_client "... Too many
//    connections from your address" (RFC 5321 §3.8, §4.2.3: 421, then close). The per-client
//    count is exact across shards: SO_REUSEPORT spreads one client's connections over the
//    shards by source port, so each shard counting alone would allow up to shards times the
//    limit. The table (ClientConnections, core/server/admission.h) is shared and locked at
//    accept and close only. A client is its IPv4 address or its IPv6 /64, as for AUTH failures.
//    On the implicit TLS port the refusal is a bare close: a reply in the clear means nothing to
//    a TLS client.
//  - Data rate: once [server] data_rate_grace has passed in the data phase (DATA, BDAT), a client
//    whose average rate since the data phase began is under min_data_rate gets "421 4.4.2
//    <hostname> Error: data rate too low" and is closed. The command timeout alone would let a
//    client that sends one octet a minute hold a connection for ever.
//  - Greeting delay ([server] greeting_delay, default 0): the 220 waits; a client that talks
//    first gets 554 5.5.0 and is closed (the session's rule, RFC 5321 §3.1; Postfix postscreen's
//    pregreet test). Not on the implicit TLS port, where the client speaks first by design.
// Threading: lives on its shard's reactor thread; the store's and the verifier's callbacks come
// back to it through Post().
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/clock.h"
#include "core/counter.h"
#include "core/net.h"
#include "core/server/admission.h"
#include "core/shard.h"
#include "core/smtp/server_session.h"
#include "queue/spool.h"
#include "queue/suppression.h"

namespace spate::tls {
class TlsContext;
}  // namespace spate::tls
namespace spate::auth {
class Verifier;
}  // namespace spate::auth

namespace spate::server {

class ServerConnection;

// Campaign name (queue::NewMessage::campaign, exact) -> its default priority, -9 to 9.
using CampaignPriorities = std::map<std::string, int8_t, std::less<>>;

// What the submission server is told: the daemon maps [server], [tls] timeouts and [auth] limits
// onto this. Defaults are the shipped configuration's.
struct Options {
  std::string hostname = "localhost";  // greeting, EHLO and Received:
  size_t max_message_size = 50 << 20;  // SIZE (RFC 1870)
  size_t max_recipients = 100;
  Seconds command_timeout{300};               // RFC 5321 §4.5.3.2.7
  unsigned max_connections = 10000;           // in total: each shard takes ceil(this / shards)
  unsigned max_connections_per_client = 100;  // exact across shards; 0: no limit
  size_t min_data_rate = 1024;  // octets/s after data_rate_grace in the data phase; 0: none
  Seconds data_rate_grace{30};
  Seconds greeting_delay{0};
  std::vector<Network> relay_networks;
  // [server] proxy_protocol: a connection from one of these begins with a PROXY protocol
  // header (v1 or v2), and the client it names is the client for everything (relay control,
  // the per-client limit, AUTH lockout, Received:). One that does not is closed. Empty: off.
  std::vector<Network> proxy_networks;
  std::vector<std::string> local_domains;  // lower case
  Seconds tls_handshake_timeout{30};
  bool auth_plaintext = false;
  unsigned auth_max_failures = 5;
  Seconds auth_failure_window{600};
  // RFC 5321 §4.5.1: "RCPT TO:<postmaster>" (no domain) must be accepted; it is stored as this
  // address, so no message is ever queued for a recipient without a domain.
  std::string postmaster = "postmaster@localhost";
  // [delivery] dsn: DSN offered to clients (smtp::ServerSession::Options::dsn).
  bool dsn = true;
  // [server] campaign_header: kept with each message (queue::NewMessage::campaign).
  std::string campaign_header = "X-Campaign";
  // [campaigns."NAME"] priority: the priority (-9 to 9) of a message of that campaign whose
  // client set none the session honoured (RFC 6710 MT-PRIORITY; ToSpoolMessage()).
  CampaignPriorities campaign_priority;
  // The suppression list (queue/suppression.h), asked at every RCPT; null: none. A listed
  // recipient gets 550 5.1.1 naming since when and why, and `suppressed` (when set) is told,
  // on the shard (for the records).
  const queue::Suppression* suppression = nullptr;
  std::function<void(std::string_view sender, std::string_view recipient,
                     const queue::SuppressionEntry& entry)>
      suppressed;
  // Message text with a bare CR or LF, or a NUL (core/smtp/server_session.h).
  smtp::BareLfPolicy bare_lf = smtp::BareLfPolicy::kReject;
  smtp::NulPolicy nul = smtp::NulPolicy::kReject;
};

// Counters of one shard's server (single writer: the shard; read by the metrics exporter).
struct Stats {
  Counter messages_received;  // messages acknowledged with 250 (durable)
  Counter recipients_received;
  Counter connections_accepted;
  Counter connections_refused;  // over max_connections(_per_client): 421 at accept
  // From [server] proxy_networks without a valid PROXY header (or none in time): closed.
  Counter proxy_header_errors;
  Gauge connections_inbound;
  // Times a connection stopped reading because its client was not reading its replies (more
  // than kMaxQueuedOutput queued): a client pipelining without reading cannot grow memory.
  Counter output_paused;
  // Messages whose commit failed (451 4.3.0, or 452 4.3.1 for a full disk): nothing was stored.
  Counter commits_failed;
  // Recipients refused at RCPT because they are on the suppression list.
  Counter suppressed;
  // From the end of a message's data to its 250 (its commit, DKIM signing included), seconds.
  static constexpr double kAcceptLatencyBounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,   0.25,   0.5,   1,    2.5,   5};
  Histogram accept_latency{kAcceptLatencyBounds};
};

// Output a submission connection queues before it stops reading its client (see Stats).
inline constexpr size_t kMaxQueuedOutput = 64 << 10;

// Where accepted messages go to be made durable: the spool (SpoolStore), or a test's fake.
class MessageStore {
 public:
  virtual ~MessageStore() = default;
  // `done` runs once, on any thread, when the message is durable (with its id) or could not be
  // stored (an error); it gets the message back.
  virtual void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) = 0;
  // Whether it takes messages now (any thread, cheap): the session refuses MAIL while it does
  // not (452 4.3.1 when its disk is full, 451 4.3.0 when it cannot write).
  virtual smtp::Intake intake() const { return smtp::Intake::kOpen; }
};

class SpoolStore final : public MessageStore {
 public:
  explicit SpoolStore(queue::Spool& spool) : spool_(spool) {}
  void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) override {
    spool_.Accept(std::move(message), std::move(done));
  }
  smtp::Intake intake() const override {
    switch (spool_.health()) {
      case queue::Health::kOk:
        return smtp::Intake::kOpen;
      case queue::Health::kLowSpace:
        return smtp::Intake::kFull;
      case queue::Health::kFailed:
      case queue::Health::kStalled:
        return smtp::Intake::kUnavailable;
    }
    return smtp::Intake::kOpen;
  }

 private:
  queue::Spool& spool_;
};

// What every shard's server shares: made once at start-up by main, outliving the shards. The
// TLS context is read-only from then on (any thread); the others have their own locks.
struct Security {
  const tls::TlsContext* tls = nullptr;   // null: no STARTTLS, no implicit TLS
  auth::Verifier* verifier = nullptr;     // null: no AUTH
  ClientConnections* clients = nullptr;   // null: this server counts its clients alone
  AuthFailures* auth_failures = nullptr;  // null: this server counts AUTH failures alone
};

class SubmissionServer : public Service {
 public:
  // Runs on the store's thread (the spool's commit thread) for every durable message; it must
  // only hand the message on. Shared by every shard's server: it must be safe to call from
  // that one thread for all of them.
  using Accepted = std::function<void(queue::MessageId, queue::NewMessage&&)>;

  // Runs on `reactor`, the loop of shard `shard_id` of `shard_count` (the daemon passes its
  // Shard's; a test may turn a reactor of its own). The shard count splits [server]
  // max_connections; the id is for logs. Takes ownership of `listen_fd` and of
  // `implicit_tls_fd` (-1: none), bound and listening sockets. An implicit TLS listener needs
  // security.tls. Borrows the rest for its life; `reactor` must outlive the store's callbacks
  // too (they are posted to it).
  SubmissionServer(Reactor& reactor, ShardId shard_id, ShardId shard_count, const Options& options,
                   MessageStore& store, Stats& stats, int listen_fd, Accepted on_accepted,
                   int implicit_tls_fd = -1, Security security = {});
  ~SubmissionServer() override;

  void Start();
  void Shutdown() noexcept override;
  // Draining the node (spate ctl drain): the listening sockets are closed, so new connections
  // are refused by the kernel (a balancer's health check sees the node down); the sessions
  // open now go on to their end. There is no way back but a restart. On this shard's thread.
  void StopAccepting();

 private:
  friend class ServerConnection;
  struct Listener {
    int fd = -1;
    bool implicit_tls = false;
    Reactor::OpId op = 0;
    bool accepting = false;
  };

  void ArmAccept(Listener& listener);
  void OnAccept(Listener& listener, int fd);
  // Turns an accepted socket away before any session exists: 421 4.7.0 (on the implicit TLS
  // port nothing) and close.
  void Refuse(const Listener& listener, int fd, const std::string& client, std::string_view why);
  void Commit(ServerConnection& conn);
  // The refusal of a recipient on the suppression list ("550 5.1.1 ... suppressed since ..."),
  // or "" (on this shard, from the session's rcpt_check).
  std::string CheckSuppressed(std::string_view mail_from, std::string_view mailbox) const;
  // Hands `request` to the verifier; the verdict comes back to `conn` (if still open) on this
  // shard, after the failure, if any, is counted.
  void VerifyAuth(ServerConnection& conn, smtp::AuthRequest&& request);

  Reactor& reactor_;
  ShardId shard_id_;
  const Options& options_;
  MessageStore& store_;
  Stats& stats_;
  std::array<Listener, 2> listeners_;  // submission, implicit TLS (fd -1: none)
  // What a commit callback needs of the server, shared with the callbacks still queued in the
  // store: they run on its thread and may outlive the server at shutdown. The one shared_ptr
  // between a shard and another thread here; its mutex is taken once per commit, on the store's
  // thread, and once at destruction.
  struct Handoff {
    std::mutex mu;
    bool alive = true;     // guarded by mu
    Accepted on_accepted;  // guarded by mu
  };
  std::shared_ptr<Handoff> handoff_;
  Security security_;
  bool shutting_down_ = false;
  bool stopped_accepting_ = false;
  size_t max_connections_;  // this shard's share of [server] max_connections
  std::unique_ptr<ClientConnections> own_clients_;   // when Security::clients is null
  ClientConnections* clients_;                       // never null
  std::unique_ptr<AuthFailures> own_auth_failures_;  // when Security::auth_failures is null
  AuthFailures* auth_failures_;                      // never null
  uint64_t next_conn_id_ = 1;
  // Failed commits are logged once a minute, with how many there were.
  uint64_t commit_failures_unlogged_ = 0;
  Reactor::Clock::time_point next_commit_failure_log_{};
  std::unordered_map<uint64_t, ServerConnection*> conns_;
};

// The spool's form of a received message: everything it must keep, DSN parameters included
// (RFC 3461 §4: they travel with the message until its notices are sent). The bare
// "<postmaster>" recipient becomes `postmaster` (Options::postmaster).
// `campaign_header` (may be empty: none) names the header whose value is the message's
// campaign: printable US-ASCII only, at most kMaxCampaign octets (it becomes a metric label).
// The priority is the client's MT-PRIORITY when the session honoured one (an explicit 0
// included), else the campaign's entry in `campaign_priority`, else 0.
queue::NewMessage ToSpoolMessage(smtp::ReceivedMessage&& received, std::string_view postmaster,
                                 std::string_view campaign_header = {},
                                 const CampaignPriorities& campaign_priority = {});
inline constexpr size_t kMaxCampaign = 128;

}  // namespace spate::server
