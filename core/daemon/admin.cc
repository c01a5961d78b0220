#include "core/daemon/admin.h"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

#include <sys/socket.h>
#include <unistd.h>

#include "core/connection.h"
#include "core/log.h"
#include "core/server/admission.h"
#include "core/smtp/ascii.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

// One client of the admin API: requests answered in order, then closed when it asks (or on a
// protocol error, after its response).
class AdminServer::AdminConnection final : public Connection {
 public:
  AdminConnection(AdminServer& server, int fd)
      : Connection(server.reactor_, fd), server_(server), session_(server.limits_) {
    // For what the handlers record of the client (an injected message's Received: line).
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
        (peer.ss_family == AF_INET || peer.ss_family == AF_INET6))
      peer_address_ = server::ClientAddress(peer);
  }
  ~AdminConnection() override { *alive_ = false; }

  void Begin() {
    SetOutputLimit(kOutputLimit);
    ArmIdle();
    StartReading();
  }

 protected:
  void OnData(std::string_view data) noexcept override {
    session_.OnBytes(data);
    Serve();
    if (waiting_ || closing())
      return;
    // Every request before it answered: one without the token is refused now, not after its
    // body (up to max_body_bytes) has been held for it.
    if (const http::Request* head = session_.head_in_progress();
        head != nullptr && !server_.Authorized(*head)) {
      keep_alive_ = false;
      Answer(Unauthorized());
    }
  }

  void OnClosed(int) noexcept override {
    reactor().CancelTimer(idle_);
    *alive_ = false;
    auto& c = server_.conns_;
    c.erase(std::remove(c.begin(), c.end(), this), c.end());
  }

 private:
  // Answers the requests that have come, in order: one at a time, the next once the last one's
  // answer is out (a handler may answer later, from off the reactor).
  void Serve() {
    while (!waiting_) {
      std::optional<http::Request> req = session_.TakeRequest();
      if (!req)
        break;
      ArmIdle();  // a whole request came: the client is not idle
      keep_alive_ = req->keep_alive;
      req->peer_address = peer_address_;
      if (!server_.Authorized(*req)) {
        if (!Answer(Unauthorized()))
          return;
        continue;
      }
      waiting_ = true;
      in_handler_ = true;
      Respond respond = [this, alive = alive_](http::Response resp) {
        if (!*alive)
          return;  // the client went away meanwhile
        if (in_handler_) {
          answered_ = std::move(resp);  // answered at once: Serve() sends it
          return;
        }
        waiting_ = false;
        if (Answer(std::move(resp))) {
          ResumeReading();
          Serve();
        }
      };
      try {
        server_.handle_(*req, std::move(respond));
      } catch (const std::exception& e) {  // a handler's JSON error: the client's fault
        if (!answered_)
          answered_ = Error(400, std::string("bad request: ") + e.what());
      }
      in_handler_ = false;
      if (answered_) {
        waiting_ = false;
        http::Response resp = std::move(*answered_);
        answered_.reset();
        if (!Answer(std::move(resp)))
          return;
      } else {
        PauseReading();  // answered later; a client that pipelines waits its turn
      }
    }
    if (waiting_)
      return;
    if (std::optional<http::Response> err = session_.TakeError()) {
      Send(http::Serialize(*err, true));
      Close();
    }
  }

  static http::Response Unauthorized() {
    http::Response resp = Error(401, "a bearer token is required (Authorization: Bearer TOKEN)");
    resp.headers.emplace_back("WWW-Authenticate", "Bearer");
    return resp;
  }

  // Closes the connection once kIdleTimeout passes without a whole request, unless one is
  // being answered (then it waits on: a slow handler is not the client's idleness).
  void ArmIdle() {
    reactor().CancelTimer(idle_);
    idle_ = reactor().AddTimer(reactor().now() + kIdleTimeout, [this] {
      idle_ = {};
      if (waiting_)
        return ArmIdle();
      Abort();
    });
  }

  // False once the connection is closing (the client asked for it).
  bool Answer(http::Response resp) {
    Send(http::Serialize(resp, !keep_alive_));
    if (!keep_alive_) {
      Close();
      return false;
    }
    return true;
  }

  AdminServer& server_;
  std::string peer_address_;  // "" unknown
  http::ServerSession session_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool waiting_ = false;     // a request is being answered
  bool in_handler_ = false;  // inside handle_: an answer now is kept in answered_
  std::optional<http::Response> answered_;
  bool keep_alive_ = true;
  Reactor::TimerId idle_;
};

AdminServer::AdminServer(Reactor& reactor, int fd, std::string token, Handler handle,
                         http::Limits limits)
    : reactor_(reactor),
      fd_(fd),
      token_(std::move(token)),
      handle_(std::move(handle)),
      limits_(limits) {}

AdminServer::~AdminServer() {
  if (fd_ >= 0)
    close(fd_);
}

http::Response AdminServer::Error(int status, const std::string& text, const std::string& field) {
  nlohmann::json j = {{"error", text}};
  if (!field.empty())
    j["field"] = field;
  http::Response r;
  r.status = status;
  r.body = j.dump();
  return r;
}

bool AdminServer::Authorized(const http::Request& r) const {
  if (token_.empty())
    return true;
  std::string_view auth = r.header("authorization");
  // The scheme's name is case-insensitive (RFC 9110 §11.1): "bearer" is "Bearer".
  constexpr std::string_view kBearer = "Bearer ";
  if (!smtp::StartsWithNoCase(auth, kBearer))
    return false;
  auth.remove_prefix(kBearer.size());
  // Constant time in the token's length: no early exit tells how much of it was right.
  unsigned char diff = auth.size() == token_.size() ? 0 : 1;
  for (size_t i = 0; i < token_.size(); ++i)
    diff |= static_cast<unsigned char>(token_[i] ^ (i < auth.size() ? auth[i] : 0));
  return diff == 0;
}

void AdminServer::Start() {
  ArmAccept();
}

void AdminServer::ArmAccept() {
  if (shutting_down_)
    return;
  accepting_ = true;
  op_ = reactor_.Accept(fd_, [this](int res) {
    accepting_ = false;
    if (shutting_down_) {
      if (res >= 0)
        close(res);
      return;
    }
    if (res >= 0 && conns_.size() >= kMaxConnections) {
      if (!at_capacity_logged_)
        SPATE_LOG(kWarn, "admin: %zu connections open: new ones are closed until some end",
                  conns_.size());
      at_capacity_logged_ = true;
      close(res);
    } else if (res >= 0) {
      at_capacity_logged_ = false;
      auto* conn = new AdminConnection(*this, res);
      conns_.push_back(conn);
      conn->Begin();
    } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
      SPATE_LOG(kWarn, "admin: accept: %s", log::ErrorText(-res));
    }
    ArmAccept();
  });
}

void AdminServer::Shutdown() noexcept {
  shutting_down_ = true;
  if (accepting_)
    reactor_.Cancel(op_);
  std::vector<AdminConnection*> open = conns_;
  for (AdminConnection* c : open)
    c->Abort();
}

}  // namespace spate::daemon
