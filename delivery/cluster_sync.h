// delivery/cluster_sync.h
//
// The state the nodes of a fleet share besides their limits ([cluster], issue 15): the
// suppression list and the operators' suspensions and bounces. Each is a channel, a map of key
// -> value with puts and deletes; every node applies every node's changes to its own copy (the
// list in its spool, the controls in its Controls), so a lookup never waits for Redis.
//
// In Redis, per channel NAME: "spate:state:NAME", a hash of the current map (a node that starts
// or was away reads it whole, HSCAN), and "spate:log:NAME", a stream of the changes (XADD,
// trimmed to about a million), which each node reads after what it has seen (XREAD, every
// poll_interval), skipping its own. A change made here while Redis is away waits in an outbox
// (bounded) and goes when it is back.
// Lifetime: made before the shards run (so that changes are heard from the first), started on
// one shard's reactor, which must outlive it. Threading: Publish() from any thread (before
// Start() too: it waits); the rest on that reactor.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/reactor.h"
#include "core/redis/client.h"
#include "delivery/cluster.h"

namespace spate::delivery {

class ClusterSync {
 public:
  struct Channel {
    std::string name;  // "suppression", "controls"
    // Another node's change: put `value`, or delete for nullopt. On the reactor.
    std::function<void(const std::string& key, const std::optional<std::string>& value)> apply;
  };
  static constexpr size_t kMaxOutbox = 1'000'000;  // changes waiting for Redis; more are dropped

  ClusterSync(const ClusterOptions& options, std::vector<Channel> channels);
  ~ClusterSync();
  ClusterSync(const ClusterSync&) = delete;
  ClusterSync& operator=(const ClusterSync&) = delete;

  void Start(Reactor& reactor);
  // A change made on this node, to share. Any thread.
  void Publish(size_t channel, std::string key, std::optional<std::string> value);

  // For tests and the log: changes applied from other nodes, and sent.
  uint64_t applied() const { return applied_; }
  uint64_t sent() const { return sent_; }

 private:
  struct Change {
    size_t channel;
    std::string key;
    std::optional<std::string> value;
  };
  struct ChannelState {
    Channel channel;
    bool synced = false;   // read whole since the last connection
    bool reading = false;  // an XREAD or a sync is out
    std::string last_id = "0-0";
  };

  void Poll();
  void Flush();
  void FullSync(size_t c, std::string cursor, std::string last_id);
  void Read(size_t c);

  Reactor* reactor_ = nullptr;  // Start()'s; guarded by mu_ for Publish()
  ClusterOptions options_;
  std::vector<ChannelState> channels_;
  std::unique_ptr<redis::Client> redis_;
  std::mutex mu_;
  std::deque<Change> outbox_;  // guarded by mu_
  bool flush_posted_ = false;  // guarded by mu_
  size_t dropped_ = 0;         // guarded by mu_
  bool flushing_ = false;
  // Changes Redis did not take (the connection went): sent first next time, in their order.
  std::deque<Change> retry_;
  uint64_t applied_ = 0;
  uint64_t sent_ = 0;
  Reactor::TimerId poll_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spate::delivery
