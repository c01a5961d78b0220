#include "core/daemon/admin.h"

#include <algorithm>
#include <cerrno>

#include <unistd.h>

#include "core/connection.h"
#include "core/log.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

// One client of the admin API: requests answered in order, then closed when it asks (or on a
// protocol error, after its response).
class AdminServer::AdminConnection final : public Connection {
 public:
  AdminConnection(AdminServer& server, int fd) : Connection(server.reactor_, fd), server_(server) {}

  void Begin() { StartReading(); }

 protected:
  void OnData(std::string_view data) noexcept override {
    session_.OnBytes(data);
    while (std::optional<http::Request> req = session_.TakeRequest()) {
      http::Response resp;
      if (!server_.Authorized(*req)) {
        resp = Error(401, "a bearer token is required (Authorization: Bearer TOKEN)");
        resp.headers.emplace_back("WWW-Authenticate", "Bearer");
      } else {
        try {
          resp = server_.handle_(*req);
        } catch (const std::exception& e) {  // a handler's JSON error: the client's fault
          resp = Error(400, std::string("bad request: ") + e.what());
        }
      }
      Send(http::Serialize(resp, !req->keep_alive));
      if (!req->keep_alive) {
        Close();
        return;
      }
    }
    if (std::optional<http::Response> err = session_.TakeError()) {
      Send(http::Serialize(*err, true));
      Close();
    }
  }

  void OnClosed(int) noexcept override {
    auto& c = server_.conns_;
    c.erase(std::remove(c.begin(), c.end(), this), c.end());
  }

 private:
  AdminServer& server_;
  http::ServerSession session_;
};

AdminServer::AdminServer(Reactor& reactor, int fd, std::string token, Handler handle)
    : reactor_(reactor), fd_(fd), token_(std::move(token)), handle_(std::move(handle)) {}

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
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() < kBearer.size() || auth.substr(0, kBearer.size()) != kBearer)
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
    if (res >= 0) {
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
