// delivery/cluster.h
//
// A fleet of spate nodes sharing the shaping limits of its destinations ([cluster], issue 15),
// in Redis, as KumoMTA does: each node keeps its own spool and queue, and asks Redis before it
// spends a limit that is the fleet's.
//
//   - Message and connection rates (max_message_rate, max_connection_rate) are GCRA in Redis:
//     one Lua script, atomic, on Redis's clock (TIME), takes a cell of "spate:rate:KEY" or
//     says how long until one is due. The same algorithm as the per-node Gcra (throttle.h),
//     but that a cell asked for less than one interval late keeps its due time (cluster.cc).
//   - Connection limits (connection_limit) are leases: a sorted set "spate:lease:KEY" of
//     members node/shard/id scored by their expiry; a connection takes one while fewer than the
//     limit are unexpired, renews it every lease_ttl / 3 while open, and removes it at close. A
//     node that dies holds nothing after lease_ttl.
//   - Each shard renews "spate:nodes" (node -> expiry) every heartbeat: the live node count.
//
// When Redis cannot be reached (no connection, a reply late), the fallback is in force until it
// can: kDivided (default) divides each limit by the last known node count ([cluster] nodes
// until Redis has said) and applies it on this node alone; kHeld holds delivery. Accepting mail
// never depends on Redis. Each change of mode is logged, and counted in the metrics.
//
// Threading: one Cluster per shard, on its reactor (it owns that shard's redis::Client);
// ClusterShared is read by the metrics exporter from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "core/clock.h"
#include "core/net.h"
#include "core/reactor.h"
#include "core/redis/client.h"
#include "core/task.h"

namespace spate::delivery {

struct ClusterOptions {
  std::string node;  // [cluster] node: this node's name, unique in the fleet
  Endpoint redis;    // [cluster] redis
  enum class Fallback : uint8_t { kDivide, kHold };
  Fallback fallback = Fallback::kDivide;  // [cluster] fallback: "divide" or "hold"
  unsigned nodes = 1;                     // [cluster] nodes: the divisor until Redis says
  Seconds lease_ttl{30};
  Seconds heartbeat{1};
  Seconds timeout{1};          // a Redis reply later than this: Redis is down for us
  std::string redis_username;  // AUTH ([cluster] redis_username, redis_password_file)
  std::string redis_password;
};

// The connection every Cluster and the ClusterSync make to [cluster] redis.
redis::Client::Options RedisOptions(const ClusterOptions& options);

// What the shards of a node share, for the metrics.
struct ClusterShared {
  std::atomic<unsigned> live_nodes{0};  // as Redis last said (0: not yet)
  std::atomic<unsigned> shards_shared{0};
  std::atomic<unsigned> shards_fallback{0};
  std::atomic<uint64_t> redis_errors{0};  // commands Redis did not answer
};

class Cluster {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Mode : uint8_t { kShared, kDivided, kHeld };
  static const char* ModeName(Mode mode);  // "shared", "divided", "held"

  // `shared` borrowed for its life.
  Cluster(Reactor& reactor, const ClusterOptions& options, ClusterShared& shared, unsigned shard);
  ~Cluster();  // what is still asked is dropped (callbacks never run); leases lapse in Redis
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  void Start();

  Mode mode() const { return mode_; }
  // The divisor of kDivided: the live nodes Redis last counted, else [cluster] nodes; >= 1.
  unsigned nodes() const;
  // Changes whenever mode() or nodes() does: sites compute their limits again.
  uint64_t generation() const { return generation_; }

  // A cell of the fleet's `key` ("msg:SITE"), one per `interval`. done(kShared, 0): taken;
  // done(kShared, w): none now, one is due in w; done(fallback mode, 0): Redis failed, and the
  // fallback decides. Never inside the call.
  using CellDone = UniqueFunction<void(Mode mode, Clock::duration wait)>;
  void TakeCell(const std::string& key, Clock::duration interval, CellDone done);

  // A lease on one of `limit` slots of `key` ("conn:SITE"). done(kShared, id): held until
  // ReleaseLease(id); done(kShared, 0): all taken; done(fallback mode, 0): Redis failed.
  using LeaseDone = UniqueFunction<void(Mode mode, uint64_t lease)>;
  void AcquireLease(const std::string& key, unsigned limit, LeaseDone done);
  void ReleaseLease(uint64_t lease);
  size_t leases() const { return leases_.size(); }

 private:
  void OnState(bool up, const std::string& why);
  void SetMode(Mode mode, const std::string& why);
  void Heartbeat();
  void Renew();
  std::string Member(uint64_t id) const;

  Reactor& reactor_;
  ClusterOptions options_;
  ClusterShared& shared_;
  unsigned shard_;
  std::unique_ptr<redis::Client> redis_;
  Mode mode_;
  bool counted_ = false;  // this shard is in shared_'s mode counts
  uint64_t generation_ = 1;
  unsigned live_nodes_ = 0;
  uint64_t next_lease_ = 1;
  std::map<uint64_t, std::string> leases_;  // id -> key
  Reactor::TimerId heartbeat_timer_;
  bool heartbeat_out_ = false;  // a heartbeat is waiting for its answer
  Reactor::TimerId renew_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spate::delivery
