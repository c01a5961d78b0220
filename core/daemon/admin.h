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
  std::vector<AdminConnection*> conns_;
};

}  // namespace spate::daemon
