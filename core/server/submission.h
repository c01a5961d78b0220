// core/server/submission.h
//
// SubmissionServer is the submission port on one shard: it accepts on this shard's
// SO_REUSEPORT listening socket and runs one smtp::ServerSession per connection. A message
// whose data phase ends goes to the spool; only when its commit batch is durable does the
// session get its queue id and the client its 250 (core/smtp/server_session.h). Then the
// message is handed on with `on_accepted`, on this shard, for delivery.
//
// A commit that completes after its client went away is still handed on: it is durable, so it
// is delivered (the client, lacking a 250, may send it again: at-least-once).
// Threading: lives on its shard.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "core/config.h"
#include "core/shard.h"
#include "core/stats.h"
#include "queue/spool.h"

namespace spate::server {

class ServerConnection;

class SubmissionServer : public Service {
 public:
  using Accepted = std::function<void(queue::MessageId, queue::NewMessage&&)>;

  // Takes ownership of `listen_fd`, a bound and listening socket.
  SubmissionServer(Shard& shard, const Config& config, queue::Spool& spool, ShardStats& stats,
                   int listen_fd, Accepted on_accepted);
  ~SubmissionServer() override;

  void Start();
  void Shutdown() noexcept override;

 private:
  friend class ServerConnection;
  void ArmAccept();
  void Commit(ServerConnection& conn);

  Shard& shard_;
  const Config& config_;
  queue::Spool& spool_;
  ShardStats& stats_;
  int listen_fd_;
  Accepted on_accepted_;
  Reactor::OpId accept_op_ = 0;
  bool accepting_ = false;
  bool shutting_down_ = false;
  uint64_t next_conn_id_ = 1;
  std::unordered_map<uint64_t, ServerConnection*> conns_;
};

}  // namespace spate::server
