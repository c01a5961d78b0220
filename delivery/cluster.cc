#include "delivery/cluster.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/log.h"

namespace spate::delivery {
namespace {

// GCRA (the "virtual scheduling" form, as throttle.h), atomic in Redis, on Redis's clock so
// that every node's decision is on one time line. KEYS[1]: the limit; ARGV[1]: the interval
// between cells, microseconds. Returns 0 (taken) or the microseconds until a cell is due.
// A cell asked for less than one interval after it was due is given its due time, not now:
// the shard that waited for it comes late by its timer and a round trip to Redis, and under
// load by more, and each such delay would be taken from the rate (a CI run on a busy machine
// measured 6.93/s for 10/s; by hand, beside busy loops, 9.96-9.98). Later than one interval,
// the line starts afresh at now: no burst builds up while no one sends, and over any stretch
// no more cells are given than the rate allows plus one.
constexpr const char* kTakeCell = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now - interval then tat = now end
if tat > now then return tat - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX',
           math.floor((next_tat - now) / 1000) + 1000)
return 0
)lua";

// A lease: KEYS[1] the sorted set; ARGV[1] the limit, ARGV[2] the TTL (ms), ARGV[3] the
// member. Expired members go first; one already there is renewed. 1: held, 0: all taken.
constexpr const char* kAcquire = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
)lua";

// Renews this shard's leases of one key (ARGV[1] the TTL, ms; ARGV[2..] the members); also
// puts back those an outage of Redis (a restart) lost: they are open connections.
constexpr const char* kRenew = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return #ARGV - 1
)lua";

// The node is alive for 5 heartbeats; returns how many nodes are.
constexpr const char* kHeartbeat = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZCARD', KEYS[1])
)lua";

int64_t Millis(Seconds s) {
  return static_cast<int64_t>(std::llround(s.count() * 1000));
}

template <typename D>
Reactor::Clock::duration ToClock(D d) {
  return std::chrono::duration_cast<Reactor::Clock::duration>(d);
}

}  // namespace

redis::Client::Options RedisOptions(const ClusterOptions& options) {
  redis::Client::Options ro;
  ro.server = options.redis;
  ro.command_timeout = options.timeout;
  ro.connect_timeout = options.timeout;
  ro.username = options.redis_username;
  ro.password = options.redis_password;
  return ro;
}

const char* Cluster::ModeName(Mode mode) {
  switch (mode) {
    case Mode::kShared:
      return "shared";
    case Mode::kDivided:
      return "divided";
    case Mode::kHeld:
      return "held";
  }
  return "held";
}

Cluster::Cluster(Reactor& reactor, const ClusterOptions& options, ClusterShared& shared,
                 unsigned shard)
    : reactor_(reactor),
      options_(options),
      shared_(shared),
      shard_(shard),
      mode_(options.fallback == ClusterOptions::Fallback::kHold ? Mode::kHeld : Mode::kDivided) {
  redis_ = std::make_unique<redis::Client>(
      reactor_, RedisOptions(options_),
      [this](bool up, const std::string& why) { OnState(up, why); });
}

Cluster::~Cluster() {
  *alive_ = false;
  reactor_.CancelTimer(heartbeat_timer_);
  reactor_.CancelTimer(renew_timer_);
  if (counted_) {
    (mode_ == Mode::kShared ? shared_.shards_shared : shared_.shards_fallback).fetch_sub(1);
  }
}

void Cluster::Start() {
  counted_ = true;
  shared_.shards_fallback.fetch_add(1);  // until Redis answers
  redis_->Start();                       // the heartbeats begin once it is connected (OnState)
  renew_timer_ =
      reactor_.AddTimer(reactor_.now() + ToClock(options_.lease_ttl / 3), [this] { Renew(); });
}

unsigned Cluster::nodes() const {
  return std::max(1u, live_nodes_ > 0 ? live_nodes_ : options_.nodes);
}

void Cluster::OnState(bool up, const std::string& why) {
  if (up) {
    // Shared again once Redis answers: the heartbeat asks at once.
    if (!heartbeat_timer_.valid() && !heartbeat_out_)
      Heartbeat();
    return;
  }
  SetMode(options_.fallback == ClusterOptions::Fallback::kHold ? Mode::kHeld : Mode::kDivided, why);
}

void Cluster::SetMode(Mode mode, const std::string& why) {
  if (mode == mode_)
    return;
  if (counted_) {
    (mode_ == Mode::kShared ? shared_.shards_shared : shared_.shards_fallback).fetch_sub(1);
    (mode == Mode::kShared ? shared_.shards_shared : shared_.shards_fallback).fetch_add(1);
  }
  mode_ = mode;
  ++generation_;
  if (mode == Mode::kShared) {
    SPATE_LOG(kInfo, "cluster: shard %u: limits shared in Redis %s (%u nodes)", shard_,
              options_.redis.text.c_str(), nodes());
  } else if (mode == Mode::kDivided) {
    SPATE_LOG(kWarn, "cluster: shard %u: %s: each limit divided by %u nodes, applied here alone",
              shard_, why.c_str(), nodes());
  } else {
    SPATE_LOG(kWarn, "cluster: shard %u: %s: delivery held until Redis answers", shard_,
              why.c_str());
  }
}

void Cluster::Heartbeat() {
  heartbeat_timer_ = {};
  heartbeat_out_ = true;
  const int64_t ttl = Millis(options_.heartbeat) * 5;
  redis_->Command({"EVAL", kHeartbeat, "1", "spate:nodes", options_.node, std::to_string(ttl)},
                  [this, alive = alive_](bool ok, redis::Reply reply, const std::string& error) {
                    if (!*alive)
                      return;
                    heartbeat_out_ = false;
                    if (ok && reply.type == redis::Reply::Type::kInteger) {
                      const auto n = static_cast<unsigned>(std::max<int64_t>(1, reply.integer));
                      if (n != live_nodes_) {
                        live_nodes_ = n;
                        shared_.live_nodes = n;
                        ++generation_;
                      }
                      SetMode(Mode::kShared, "");
                    } else if (ok) {
                      SPATE_LOG(kWarn, "cluster: redis: %s", reply.str.c_str());
                    } else {
                      shared_.redis_errors.fetch_add(1);
                      OnState(false, error);
                      if (!redis_->up())
                        return;  // the next connection starts them again
                    }
                    heartbeat_timer_ = reactor_.AddTimer(
                        reactor_.now() + ToClock(options_.heartbeat), [this] { Heartbeat(); });
                  });
}

void Cluster::Renew() {
  renew_timer_ =
      reactor_.AddTimer(reactor_.now() + ToClock(options_.lease_ttl / 3), [this] { Renew(); });
  std::map<std::string, std::vector<std::string>> by_key;
  for (const auto& [id, key] : leases_)
    by_key[key].push_back(Member(id));
  for (auto& [key, members] : by_key) {
    std::vector<std::string> args = {"EVAL", kRenew, "1", "spate:lease:" + key,
                                     std::to_string(Millis(options_.lease_ttl))};
    args.insert(args.end(), members.begin(), members.end());
    redis_->Command(std::move(args),
                    [this, alive = alive_](bool ok, redis::Reply, const std::string& error) {
                      if (*alive && !ok) {
                        shared_.redis_errors.fetch_add(1);
                        OnState(false, error);
                      }
                    });
  }
}

std::string Cluster::Member(uint64_t id) const {
  return options_.node + "/" + std::to_string(shard_) + "/" + std::to_string(id);
}

void Cluster::TakeCell(const std::string& key, Clock::duration interval, CellDone done) {
  const auto micros =
      std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(interval).count());
  redis_->Command({"EVAL", kTakeCell, "1", "spate:rate:" + key, std::to_string(micros)},
                  [this, done = std::move(done), alive = alive_](bool ok, redis::Reply reply,
                                                                 const std::string& error) mutable {
                    if (!*alive)
                      return;
                    if (!ok || reply.type != redis::Reply::Type::kInteger) {
                      shared_.redis_errors.fetch_add(1);
                      OnState(false, ok ? "redis: " + reply.str : error);
                      return done(mode_ == Mode::kShared ? Mode::kDivided : mode_,
                                  Clock::duration{});
                    }
                    SetMode(Mode::kShared, "");
                    done(Mode::kShared, std::chrono::microseconds(reply.integer));
                  });
}

void Cluster::AcquireLease(const std::string& key, unsigned limit, LeaseDone done) {
  const uint64_t id = next_lease_++;
  redis_->Command({"EVAL", kAcquire, "1", "spate:lease:" + key, std::to_string(limit),
                   std::to_string(Millis(options_.lease_ttl)), Member(id)},
                  [this, id, key, done = std::move(done), alive = alive_](
                      bool ok, redis::Reply reply, const std::string& error) mutable {
                    if (!*alive)
                      return;
                    if (!ok || reply.type != redis::Reply::Type::kInteger) {
                      shared_.redis_errors.fetch_add(1);
                      OnState(false, ok ? "redis: " + reply.str : error);
                      return done(mode_ == Mode::kShared ? Mode::kDivided : mode_, 0);
                    }
                    SetMode(Mode::kShared, "");
                    if (reply.integer != 1)
                      return done(Mode::kShared, 0);
                    leases_.emplace(id, key);
                    done(Mode::kShared, id);
                  });
}

void Cluster::ReleaseLease(uint64_t lease) {
  auto it = leases_.find(lease);
  if (it == leases_.end())
    return;
  const std::string member = Member(lease);
  const std::string key = "spate:lease:" + it->second;
  leases_.erase(it);
  // Best effort: a release Redis misses lapses with the TTL.
  redis_->Command({"ZREM", key, member}, [](bool, redis::Reply, const std::string&) {});
}

}  // namespace spate::delivery
