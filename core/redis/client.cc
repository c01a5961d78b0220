#include "core/redis/client.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <sys/socket.h>
#include <unistd.h>

#include "core/connection.h"
#include "core/log.h"

namespace spate::redis {
namespace {

std::string SecondsText(Seconds s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%gs", static_cast<double>(s.count()));
  return buf;
}

template <typename D>
Reactor::Clock::duration ToClock(D d) {
  return std::chrono::duration_cast<Reactor::Clock::duration>(d);
}

}  // namespace

class Client::Conn final : public Connection {
 public:
  Conn(Reactor& reactor, int fd, Client* owner) : Connection(reactor, fd), owner_(owner) {}
  void Disown() { owner_ = nullptr; }

 protected:
  void OnConnected(int error) noexcept override {
    if (owner_ != nullptr)
      owner_->OnConnected(error);
    else if (error == 0)
      Abort();
  }
  void OnData(std::string_view data) noexcept override {
    if (owner_ != nullptr)
      owner_->OnData(data);
  }
  void OnClosed(int error) noexcept override {
    if (owner_ != nullptr)
      owner_->OnConnClosed(error);
  }

 private:
  Client* owner_;
};

Client::Client(Reactor& reactor, Options options, StateChange on_state)
    : reactor_(reactor), options_(std::move(options)), on_state_(std::move(on_state)) {}

Client::~Client() {
  *alive_ = false;
  reactor_.CancelTimer(deadline_timer_);
  reactor_.CancelTimer(reconnect_timer_);
  if (conn_ != nullptr) {
    conn_->Disown();
    conn_->Abort();
  }
}

void Client::Start() {
  if (started_)
    return;
  started_ = true;
  Connect();
}

void Client::Connect() {
  reconnect_timer_ = {};
  const int fd =
      socket(options_.server.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    Down(std::string("socket: ") + std::strerror(errno));
    return;
  }
  reader_ = std::make_unique<ReplyReader>();
  conn_ = new Conn(reactor_, fd, this);
  conn_->Connect(options_.server.addr, options_.server.len);
  // The connect's own bound: a server that never answers the SYN is down after this.
  reactor_.CancelTimer(deadline_timer_);
  deadline_timer_ = reactor_.AddTimer(reactor_.now() + ToClock(options_.connect_timeout), [this] {
    deadline_timer_ = {};
    if (!up_ && conn_ != nullptr) {
      Conn* c = std::exchange(conn_, nullptr);
      c->Disown();
      c->Abort();
      Down("no connection within " + SecondsText(options_.connect_timeout));
    }
  });
}

void Client::OnConnected(int error) {
  reactor_.CancelTimer(deadline_timer_);
  if (error != 0) {
    Conn* c = std::exchange(conn_, nullptr);
    c->Disown();
    c->Abort();
    Down(std::string("connect: ") + std::strerror(error));
    return;
  }
  conn_->StartReading();
  if (options_.password.empty())
    return Up();
  // AUTH first (pipelined like any command, but before the connection counts as up): a
  // refusal is a connection that is down, and said so.
  std::vector<std::string> auth = {"AUTH"};
  if (!options_.username.empty())
    auth.push_back(options_.username);
  auth.push_back(options_.password);
  conn_->Send(FormatCommand(auth));
  pending_.push_back({[this](bool ok, Reply reply, const std::string&) {
                        if (!ok)
                          return;  // Down() already said why
                        if (reply.type == Reply::Type::kError) {
                          Conn* c = std::exchange(conn_, nullptr);
                          c->Disown();
                          c->Abort();
                          return Down("AUTH refused: " + reply.str);
                        }
                        Up();
                      },
                      reactor_.now() + ToClock(options_.command_timeout)});
  ArmDeadline();
}

void Client::Up() {
  up_ = true;
  reported_down_ = false;
  SPATE_LOG(kInfo, "redis: connected to %s", options_.server.text.c_str());
  if (on_state_)
    on_state_(true, "connected");
}

void Client::Command(std::vector<std::string> args, Done done) {
  if (!up_ || conn_ == nullptr)
    return FailLater(std::move(done), down_reason_);
  std::string cmd = FormatCommand(args);
  if (cmd.empty())
    return FailLater(std::move(done), "cannot format the command");
  conn_->Send(std::move(cmd));
  pending_.push_back({std::move(done), reactor_.now() + ToClock(options_.command_timeout)});
  if (!deadline_timer_.valid())
    ArmDeadline();
}

void Client::FailLater(Done done, std::string why) {
  reactor_.Post([done = std::move(done), why = std::move(why), alive = alive_]() mutable {
    if (*alive)
      done(false, Reply{}, why);
  });
}

void Client::ArmDeadline() {
  if (pending_.empty())
    return;
  deadline_timer_ = reactor_.AddTimer(pending_.front().deadline, [this] {
    deadline_timer_ = {};
    if (pending_.empty())
      return;
    if (reactor_.now() < pending_.front().deadline)
      return ArmDeadline();
    // The oldest command went unanswered: the server is gone (or stuck) for our purposes.
    Conn* c = std::exchange(conn_, nullptr);
    if (c != nullptr) {
      c->Disown();
      c->Abort();
    }
    Down("no reply within " + SecondsText(options_.command_timeout));
  });
}

void Client::OnData(std::string_view data) {
  auto drop = [this](const std::string& why) {
    Conn* c = std::exchange(conn_, nullptr);
    c->Disown();
    c->Abort();
    Down(why);
  };
  if (!reader_->Feed(data))
    return drop(reader_->error());
  while (std::optional<Reply> reply = reader_->Next()) {
    if (pending_.empty())
      return drop("a reply to no command");
    Done done = std::move(pending_.front().done);
    pending_.pop_front();
    const std::shared_ptr<bool> alive = alive_;
    done(true, std::move(*reply), {});
    if (!*alive || conn_ == nullptr)
      return;  // the callback destroyed us, or dropped the connection
  }
  if (!reader_->error().empty())
    return drop(reader_->error());
  if (reader_->buffered() > options_.max_reply_bytes)
    return drop("a reply over " + std::to_string(options_.max_reply_bytes) + " octets");
  reactor_.CancelTimer(deadline_timer_);
  ArmDeadline();
}

void Client::OnConnClosed(int error) {
  conn_ = nullptr;
  Down(error != 0 ? std::string("connection lost: ") + std::strerror(error)
                  : std::string("the server closed the connection"));
}

void Client::Down(const std::string& why) {
  const bool was_up = up_;
  up_ = false;
  down_reason_ = "redis " + options_.server.text + ": " + why;
  reactor_.CancelTimer(deadline_timer_);
  // What was sent is lost with the connection: each caller hears so, in order.
  std::deque<Pending> failed;
  failed.swap(pending_);
  for (Pending& p : failed)
    FailLater(std::move(p.done), down_reason_);
  // Said once per outage: when it goes down, or when the first connection fails.
  if (was_up || !reported_down_) {
    reported_down_ = true;
    SPATE_LOG(kWarn, "%s; connecting again every %s", down_reason_.c_str(),
              SecondsText(options_.reconnect_interval).c_str());
    if (on_state_)
      on_state_(false, down_reason_);
  }
  if (!reconnect_timer_.valid()) {
    reconnect_timer_ = reactor_.AddTimer(reactor_.now() + ToClock(options_.reconnect_interval),
                                         [this] { Connect(); });
  }
}

}  // namespace spate::redis
