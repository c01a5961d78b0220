// core/server/submission.cc
//
// SubmissionServer: the listeners, accept and the refusals at the connection limits, the hand-off
// of AUTH credentials to the verifier, and the bridge to the store (Commit(), ToSpoolMessage()).
// Each client's glue is ServerConnection (internal/server_connection.cc); the tables shared by
// all shards are in admission.cc.
#include "core/server/submission.h"

#include <algorithm>
#include <cstring>

#include <sys/socket.h>
#include <unistd.h>

#include "core/auth/verifier.h"
#include "core/check.h"
#include "core/log.h"
#include "core/server/internal/server_connection.h"
#include "core/smtp/header.h"
#include "core/smtp/server_session.h"
#include "core/wipe.h"

namespace spate::server {

namespace {
// Remote input for a log line: printable ASCII only, bounded.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}
}  // namespace

SubmissionServer::SubmissionServer(Reactor& reactor, ShardId shard_id, ShardId shard_count,
                                   const Options& options, MessageStore& store, Stats& stats,
                                   int listen_fd, Accepted on_accepted, int implicit_tls_fd,
                                   Security security)
    : reactor_(reactor),
      shard_id_(shard_id),
      options_(options),
      store_(store),
      stats_(stats),
      handoff_(std::make_shared<Handoff>()),
      security_(security),
      max_connections_((options.max_connections + shard_count - 1) / shard_count),
      clients_(security.clients),
      auth_failures_(security.auth_failures) {
  handoff_->on_accepted = std::move(on_accepted);
  if (clients_ == nullptr) {
    own_clients_ = std::make_unique<ClientConnections>(options.max_connections_per_client);
    clients_ = own_clients_.get();
  }
  if (auth_failures_ == nullptr) {
    own_auth_failures_ = std::make_unique<AuthFailures>(
        options.auth_max_failures,
        std::chrono::duration_cast<AuthFailures::Clock::duration>(options.auth_failure_window));
    auth_failures_ = own_auth_failures_.get();
  }
  listeners_[0].fd = listen_fd;
  listeners_[1].fd = implicit_tls_fd;
  listeners_[1].implicit_tls = true;
  SPATE_CHECK(implicit_tls_fd < 0 || security_.tls != nullptr);
}

SubmissionServer::~SubmissionServer() {
  {
    // A commit finishing now on the store's thread either handed its message on already or
    // sees the server gone.
    std::lock_guard lock(handoff_->mu);
    handoff_->alive = false;
    handoff_->on_accepted = nullptr;
  }
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
  if (shutting_down_ || stopped_accepting_)
    return;
  listener.accepting = true;
  listener.op = reactor_.Accept(listener.fd, [this, &listener](int res) {
    listener.accepting = false;
    if (shutting_down_) {
      if (res >= 0)
        close(res);
      return;
    }
    if (res >= 0) {
      OnAccept(listener, res);
    } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED && res != -ECANCELED) {
      SPATE_LOG(kWarn, "accept: %s", log::ErrorText(-res));
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
  // A load balancer's connection: the client it carries is known, and counted, once its PROXY
  // header is read (ServerConnection); the balancer itself is never the client.
  const bool proxied = std::any_of(options_.proxy_networks.begin(), options_.proxy_networks.end(),
                                   [&peer](const Network& n) { return n.Contains(peer); });
  if (!proxied && !clients_->TryAdd(client)) {
    Refuse(listener, fd, client, "Too many connections from your address");
    return;
  }
  SPATE_LOG(kDebug, "accepted a connection from %s on shard %u%s", client.c_str(),
            static_cast<unsigned>(shard_id_), proxied ? " (a PROXY header comes first)" : "");
  // From here the connection owns the count: its OnClosed() removes it.
  auto* conn =
      new ServerConnection(*this, fd, next_conn_id_++, peer, listener.implicit_tls, proxied);
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
      [this, reactor = &reactor_, conn_id = conn.id(), authzid_ok, user = std::move(user),
       mechanism = std::move(request.mechanism), address = conn.client_address(),
       key = conn.client_key()](bool verified) {
        // On a verifier worker: carry the verdict back to the connection's shard.
        reactor->Post([this, conn_id, ok = verified && authzid_ok, user, mechanism, address, key] {
          SPATE_LOG(kInfo, "auth %s: mechanism=%s user=%s client=%s shard=%u", ok ? "ok" : "failed",
                    Printable(mechanism).c_str(), Printable(user).c_str(), address.c_str(),
                    static_cast<unsigned>(shard_id_));
          // Counted even when the connection has gone meanwhile: closing does not undo a try.
          const bool locked_out = !ok && auth_failures_->RecordFailure(key, reactor_.now());
          auto it = conns_.find(conn_id);
          if (it != conns_.end())
            it->second->OnAuthVerdict(ok, locked_out);
        });
      });
  // The verifier wipes the password it was given; a short string moved from keeps its bytes.
  Wipe(request.password);
}

queue::NewMessage ToSpoolMessage(smtp::ReceivedMessage&& received, std::string_view postmaster,
                                 std::string_view campaign_header,
                                 const CampaignPriorities& campaign_priority) {
  queue::NewMessage m;
  if (!campaign_header.empty()) {
    for (char c : smtp::HeaderValue(received.body, campaign_header)) {
      if (m.campaign.size() == kMaxCampaign)
        break;
      if (c > ' ' && c < 127)  // a label value: no spaces, nothing unprintable
        m.campaign += c;
    }
  }
  m.mail_from = std::move(received.mail_from);
  m.rcpt_to = std::move(received.rcpt_to);
  for (std::string& rcpt : m.rcpt_to) {
    // The session accepts one recipient without a domain: "<postmaster>" (RFC 5321 §4.1.1.3),
    // in any case. It is delivered to the configured mailbox, like Postfix's alias.
    if (rcpt.find('@') == std::string::npos)
      rcpt = postmaster;
  }
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
  // The submitter's own word wins over its campaign's default; the session kept it only from a
  // client trusted with it (RFC 6710 §4.1).
  if (received.priority) {
    m.priority = *received.priority;
  } else if (!m.campaign.empty()) {
    if (auto it = campaign_priority.find(m.campaign); it != campaign_priority.end())
      m.priority = it->second;
  }
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

std::string SubmissionServer::CheckSuppressed(std::string_view mail_from,
                                              std::string_view mailbox) const {
  std::optional<queue::SuppressionEntry> entry =
      options_.suppression->Lookup(mailbox, reactor_.wall_ms());
  if (!entry)
    return {};
  stats_.suppressed.Add();
  if (options_.suppressed)
    options_.suppressed(mail_from, mailbox, *entry);
  // RFC 3463 X.1.1 (bad destination mailbox address): the submitter learns it at once, with
  // when and why, instead of a bounce later. The reason is remote text: printable ASCII only.
  std::string reply = "550 5.1.1 <" + std::string(mailbox) + ">: recipient suppressed since " +
                      queue::FormatRfc3339(entry->since_ms) + " (" + entry->klass;
  // RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with its CRLF; the reason gives
  // way (the address may take 254, an operator's class 64).
  constexpr size_t kMaxLine = 510;
  if (!entry->reason.empty() && reply.size() + 3 < kMaxLine) {
    reply += ": ";
    for (char c : std::string_view(entry->reason).substr(0, kMaxLine - 1 - reply.size()))
      reply += (c >= ' ' && c < 127) ? c : ' ';
  }
  reply.resize(std::min(reply.size(), kMaxLine - 1));
  reply += ")";
  return reply;
}

void SubmissionServer::Commit(ServerConnection& conn) {
  std::optional<smtp::ReceivedMessage> received = conn.session().TakeMessage();
  if (!received)
    return;  // already handed over; waiting for its commit
  queue::NewMessage message = ToSpoolMessage(std::move(*received), options_.postmaster,
                                             options_.campaign_header, options_.campaign_priority);
  uint64_t conn_id = conn.id();
  Reactor* reactor = &reactor_;
  const Reactor::Clock::time_point started = reactor_.now();
  store_.Accept(std::move(message), [this, reactor, conn_id, started, handoff = handoff_](
                                        Result<queue::MessageId> id, queue::NewMessage&& stored) {
    // On the store's thread (the spool's commit thread): the durable message goes on to
    // delivery from here, and the outcome back to the connection's shard for its reply. At
    // shutdown the server may be gone already (the spool finishes its queue after the shards):
    // then nothing is handed on (the message is durable: the next start delivers it) and the
    // posted reply never runs (the shard's loop has ended).
    const size_t recipients = stored.rcpt_to.size();
    {
      std::lock_guard lock(handoff->mu);
      if (!handoff->alive)
        return;
      if (id && handoff->on_accepted)
        handoff->on_accepted(*id, std::move(stored));
    }
    reactor->Post([this, conn_id, id, recipients, started] {
      auto it = conns_.find(conn_id);
      stats_.accept_latency.Observe(
          std::chrono::duration<double>(reactor_.now() - started).count());
      if (!id) {
        // Said once a minute with a count, not once per message: a full disk refuses them all
        // (the spool logs why, once).
        stats_.commits_failed.Add();
        ++commit_failures_unlogged_;
        const Reactor::Clock::time_point now = reactor_.now();
        if (now >= next_commit_failure_log_) {
          SPATE_LOG(kWarn, "submission: %llu messages refused, their commit failed: %s (shard %u)",
                    static_cast<unsigned long long>(commit_failures_unlogged_),
                    id.error().message().c_str(), static_cast<unsigned>(shard_id_));
          commit_failures_unlogged_ = 0;
          next_commit_failure_log_ = now + std::chrono::minutes(1);
        }
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

void SubmissionServer::StopAccepting() {
  if (stopped_accepting_)
    return;
  stopped_accepting_ = true;
  for (Listener& l : listeners_) {
    if (l.accepting)
      reactor_.Cancel(l.op);  // a connection it accepts meanwhile is still served
    if (l.fd >= 0) {
      close(l.fd);  // the ring holds its own reference until the cancel completes
      l.fd = -1;
    }
  }
  SPATE_LOG(kInfo, "shard %u: draining: no longer accepting connections",
            static_cast<unsigned>(shard_id_));
}

void SubmissionServer::Shutdown() noexcept {
  shutting_down_ = true;
  for (Listener& l : listeners_) {
    if (l.accepting)
      reactor_.Cancel(l.op);
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
