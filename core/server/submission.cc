#include "core/server/submission.h"

#include <cstring>

#include <unistd.h>

#include "core/connection.h"
#include "core/log.h"
#include "core/smtp/server_session.h"

namespace spate::server {

namespace {
using Clock = Reactor::Clock;
}  // namespace

class ServerConnection final : public Connection {
 public:
  ServerConnection(SubmissionServer& server, int fd, uint64_t id)
      : Connection(server.shard_.reactor(), fd),
        server_(server),
        id_(id),
        session_(Options(server.config_)) {}

  void Start() {
    server_.conns_.emplace(id_, this);
    server_.stats_.connections_accepted.Add();
    server_.stats_.connections_inbound.Add(1);
    session_.Start();
    Flush();
    StartReading();
    last_activity_ = reactor().now();
    ArmTimer(last_activity_ + Timeout());
  }

  // The spool's answer for the message this connection handed over.
  void Committed(Result<std::string> queue_id) {
    session_.OnCommitted(std::move(queue_id));
    Process();
  }

  smtp::ServerSession& session() { return session_; }
  uint64_t id() const { return id_; }

 protected:
  void OnData(std::string_view data) noexcept override {
    last_activity_ = reactor().now();
    session_.Feed(data);
    Process();
  }

  void OnClosed(int /*error*/) noexcept override {
    reactor().CancelTimer(timer_);
    server_.conns_.erase(id_);
    server_.stats_.connections_inbound.Add(-1);
  }

 private:
  static smtp::ServerSession::Options Options(const Config& c) {
    smtp::ServerSession::Options o;
    o.hostname = c.hostname;
    o.max_message_size = c.max_message_size;
    o.max_recipients = c.max_recipients;
    return o;
  }

  Clock::duration Timeout() const {
    return std::chrono::duration_cast<Clock::duration>(server_.config_.command_timeout);
  }

  void Process() {
    if (session_.awaiting_commit()) {
      // Nothing more is read until the spool answers: what the client pipelined behind the
      // message waits in the kernel, not in our memory.
      PauseReading();
      server_.Commit(*this);
    } else {
      ResumeReading();
    }
    Flush();
    if (session_.closed()) Close();
  }

  void Flush() {
    std::string out = session_.TakeOutput();
    if (!out.empty())
      Send(std::move(out));
  }

  void ArmTimer(Clock::time_point at) {
    timer_ = reactor().AddTimer(at, [this] {
      timer_ = {};
      Clock::time_point due = last_activity_ + Timeout();
      // A client waiting for its commit is not idle.
      if (reactor().now() < due || session_.awaiting_commit()) {
        return ArmTimer(std::max(due, reactor().now() + std::chrono::seconds(1)));
      }
      session_.OnTimeout();
      Flush();
      Close();
    });
  }

  SubmissionServer& server_;
  uint64_t id_;
  smtp::ServerSession session_;
  Clock::time_point last_activity_{};
  Reactor::TimerId timer_;
};

SubmissionServer::SubmissionServer(Shard& shard, const Config& config, queue::Spool& spool,
                                   ShardStats& stats, int listen_fd, Accepted on_accepted)
    : shard_(shard),
      config_(config),
      spool_(spool),
      stats_(stats),
      listen_fd_(listen_fd),
      on_accepted_(std::move(on_accepted)) {}

SubmissionServer::~SubmissionServer() {
  if (listen_fd_ >= 0)
    close(listen_fd_);
}

void SubmissionServer::Start() {
  ArmAccept();
}

void SubmissionServer::ArmAccept() {
  if (shutting_down_)
    return;
  accepting_ = true;
  accept_op_ = shard_.reactor().Accept(listen_fd_, [this](int res) {
    accepting_ = false;
    if (shutting_down_) {
      if (res >= 0)
        close(res);
      return;
    }
    if (res >= 0) {
      auto* conn = new ServerConnection(*this, res, next_conn_id_++);
      conn->Start();
    } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
      SPATE_LOG(kWarn, "accept: %s", std::strerror(-res));
    }
    ArmAccept();
  });
}

void SubmissionServer::Commit(ServerConnection& conn) {
  std::optional<smtp::ReceivedMessage> received = conn.session().TakeMessage();
  if (!received)
    return;  // already handed over; waiting for its commit
  queue::NewMessage message;
  message.mail_from = std::move(received->mail_from);
  message.rcpt_to = std::move(received->rcpt_to);
  message.body = std::move(received->body);
  message.body_8bit = received->body_8bit;
  uint64_t conn_id = conn.id();
  Shard* shard = &shard_;
  spool_.Accept(std::move(message),
                [this, shard, conn_id](Result<queue::MessageId> id, queue::NewMessage&& stored) {
                  // On the spool's commit thread: carry the outcome back to the connection's shard.
                  auto msg = std::make_shared<queue::NewMessage>(std::move(stored));
                  shard->Post([this, conn_id, id, msg] {
                    auto it = conns_.find(conn_id);
                    if (!id) {
                      SPATE_LOG(kError, "spool commit failed: %s", id.error().message().c_str());
                      if (it != conns_.end())
                        it->second->Committed(Unexpected{id.error()});
                      return;
                    }
                    stats_.messages_received.Add();
                    stats_.recipients_received.Add(msg->rcpt_to.size());
                    std::string queue_id = queue::FormatId(*id);
                    if (it != conns_.end())
                      it->second->Committed(queue_id);
                    on_accepted_(*id, std::move(*msg));
                  });
                });
}

void SubmissionServer::Shutdown() noexcept {
  shutting_down_ = true;
  if (accepting_)
    shard_.reactor().Cancel(accept_op_);
  // Sessions end now. A message already handed to the spool is committed and delivered after
  // the next start; one still being received was never acknowledged, so the client keeps it.
  std::vector<ServerConnection*> open;
  for (auto& [id, c] : conns_)
    open.push_back(c);
  for (ServerConnection* c : open)
    c->Abort();
}

}  // namespace spate::server
