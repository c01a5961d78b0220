// core/daemon/admin.h
//
// The admin HTTP API's listener (issue 13; `[admin] listen`, default 127.0.0.1:8025): HTTP/1.1
// connections on one shard's reactor, parsed by core/http, each request answered by `handle`
// (JSON in and out; the daemon's glue in main.cc). A bearer token (RFC 6750 §2.1:
// "Authorization: Bearer TOKEN") is checked here when one is configured, in constant time; a
// request without it gets 401 with a JSON error before any handler runs.
//
// The handler runs on the reactor: it may only read counters and hand work on, never block. It
// answers through `respond`, at once or later (work done off the reactor posts its answer back):
// on this reactor, exactly once. Requests of one connection are answered in order.
// Threading: lives on its shard.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "core/http/http.h"
#include "core/reactor.h"
#include "core/shard.h"
#include "core/task.h"

namespace spate::daemon {

class AdminServer final : public Service {
 public:
  // Bounds on clients (the API may face more than the operator's scripts): connections open at
  // once (past it, a new one is closed at once); a connection that completes no request for
  // kIdleTimeout, with none being answered, is closed (a slow or silent client holds nothing
  // for long); past kOutputLimit of answers unread, its input waits. A request without the
  // token is refused as soon as its head is read, before its body is waited for.
  static constexpr size_t kMaxConnections = 256;
  static constexpr std::chrono::seconds kIdleTimeout{60};
  static constexpr size_t kOutputLimit = 1 << 20;

  // Called on the reactor only; dropped unanswered when the client has gone.
  using Respond = UniqueFunction<void(http::Response)>;
  using Handler = std::function<void(const http::Request&, Respond)>;

  // `fd`: a listening socket (taken); `token`: "" for none; `limits`: of each request (a body
  // past max_body_bytes gets 413).
  AdminServer(Reactor& reactor, int fd, std::string token, Handler handle,
              http::Limits limits = {});
  ~AdminServer() override;

  void Start();
  void Shutdown() noexcept override;

  // {"error": TEXT} (and "field" when one is named): the shape of every refusal.
  static http::Response Error(int status, const std::string& text, const std::string& field = {});

 private:
  class AdminConnection;
  void ArmAccept();
  bool Authorized(const http::Request& r) const;

  Reactor& reactor_;
  int fd_;
  std::string token_;
  Handler handle_;
  http::Limits limits_;
  Reactor::OpId op_ = 0;
  bool accepting_ = false;
  bool shutting_down_ = false;
  bool at_capacity_logged_ = false;
  std::vector<AdminConnection*> conns_;
};

}  // namespace spate::daemon
