#include "delivery/cluster_sync.h"

#include <chrono>
#include <iterator>
#include <utility>

#include "core/log.h"

namespace spate::delivery {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr const char* kStreamCap = "1000000";  // ~ entries kept in each stream
constexpr const char* kReadCount = "1000";     // changes read at once

std::string HashKey(const std::string& name) {
  return "spate:state:" + name;
}
std::string StreamKey(const std::string& name) {
  return "spate:log:" + name;
}

}  // namespace

ClusterSync::ClusterSync(const ClusterOptions& options, std::vector<Channel> channels)
    : options_(options) {
  for (Channel& c : channels)
    channels_.push_back({std::move(c)});
}

ClusterSync::~ClusterSync() {
  *alive_ = false;
  if (reactor_ != nullptr)
    reactor_->CancelTimer(poll_timer_);
}

void ClusterSync::Start(Reactor& reactor) {
  redis_ = std::make_unique<redis::Client>(reactor, RedisOptions(options_),
                                           [this](bool up, const std::string&) {
                                             if (!up) {
                                               // Read whole again once back: Redis may have
                                               // restarted empty, or trimmed the stream.
                                               for (ChannelState& c : channels_)
                                                 c.synced = false;
                                             }
                                           });
  {
    std::lock_guard lock(mu_);
    reactor_ = &reactor;
  }
  redis_->Start();
  poll_timer_ = reactor_->AddTimer(reactor_->now() + kPollInterval, [this] { Poll(); });
}

void ClusterSync::Publish(size_t channel, std::string key, std::optional<std::string> value) {
  std::lock_guard lock(mu_);
  if (outbox_.size() >= kMaxOutbox) {
    ++dropped_;
    return;
  }
  outbox_.push_back({channel, std::move(key), std::move(value)});
  if (!flush_posted_ && reactor_ != nullptr) {
    flush_posted_ = true;
    reactor_->Post([this, alive = alive_] {
      if (*alive)
        Flush();
    });
  }
}

void ClusterSync::Poll() {
  poll_timer_ = reactor_->AddTimer(reactor_->now() + kPollInterval, [this] { Poll(); });
  Flush();
  if (!redis_->up())
    return;
  for (size_t c = 0; c < channels_.size(); ++c) {
    ChannelState& ch = channels_[c];
    if (ch.reading)
      continue;
    ch.reading = true;
    if (ch.synced) {
      Read(c);
      continue;
    }
    // Read whole: the stream's last id first, so that nothing changed during the scan is
    // missed (it is read after, and applied again: a put or a delete twice is the same).
    redis_->Command({"XREVRANGE", StreamKey(ch.channel.name), "+", "-", "COUNT", "1"},
                    [this, c, alive = alive_](bool ok, redis::Reply r, const std::string&) {
                      if (!*alive)
                        return;
                      if (!ok || r.type != redis::Reply::Type::kArray) {
                        channels_[c].reading = false;
                        return;
                      }
                      std::string last = "0-0";
                      if (!r.elements.empty() && !r.elements[0].elements.empty())
                        last = r.elements[0].elements[0].str;
                      FullSync(c, "0", last);
                    });
  }
}

void ClusterSync::FullSync(size_t c, std::string cursor, std::string last_id) {
  redis_->Command({"HSCAN", HashKey(channels_[c].channel.name), cursor, "COUNT", kReadCount},
                  [this, c, last_id, alive = alive_](bool ok, redis::Reply r, const std::string&) {
                    if (!*alive)
                      return;
                    ChannelState& ch = channels_[c];
                    if (!ok || r.type != redis::Reply::Type::kArray || r.elements.size() != 2) {
                      ch.reading = false;
                      return;
                    }
                    const redis::Reply& fields = r.elements[1];
                    for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
                      ch.channel.apply(fields.elements[i].str, fields.elements[i + 1].str);
                      ++applied_;
                    }
                    if (r.elements[0].str != "0")
                      return FullSync(c, r.elements[0].str, last_id);
                    SPATE_LOG(kInfo, "cluster: %s: read whole from Redis", ch.channel.name.c_str());
                    ch.synced = true;
                    ch.last_id = last_id;
                    Read(c);
                  });
}

void ClusterSync::Read(size_t c) {
  redis_->Command({"XREAD", "COUNT", kReadCount, "STREAMS", StreamKey(channels_[c].channel.name),
                   channels_[c].last_id},
                  [this, c, alive = alive_](bool ok, redis::Reply r, const std::string&) {
                    if (!*alive)
                      return;
                    ChannelState& ch = channels_[c];
                    ch.reading = false;
                    // A nil: nothing new. Else [[stream, [[id, [field, value, ...]], ...]]].
                    if (!ok || r.type != redis::Reply::Type::kArray || r.elements.empty() ||
                        r.elements[0].elements.size() != 2)
                      return;
                    for (const redis::Reply& entry : r.elements[0].elements[1].elements) {
                      if (entry.elements.size() != 2)
                        continue;
                      ch.last_id = entry.elements[0].str;
                      const std::vector<redis::Reply>& f = entry.elements[1].elements;
                      std::string node, key;
                      std::optional<std::string> value;
                      for (size_t i = 0; i + 1 < f.size(); i += 2) {
                        if (f[i].str == "node")
                          node = f[i + 1].str;
                        else if (f[i].str == "key")
                          key = f[i + 1].str;
                        else if (f[i].str == "value")
                          value = f[i + 1].str;
                      }
                      if (node == options_.node || key.empty())
                        continue;  // our own, or not one of ours
                      ch.channel.apply(key, value);
                      ++applied_;
                    }
                  });
}

void ClusterSync::Flush() {
  if (flushing_ || !redis_->up())
    return;
  std::deque<Change> batch;
  batch.swap(retry_);
  {
    std::lock_guard lock(mu_);
    flush_posted_ = false;
    batch.insert(batch.end(), std::make_move_iterator(outbox_.begin()),
                 std::make_move_iterator(outbox_.end()));
    outbox_.clear();
    if (dropped_ > 0) {
      SPATE_LOG(kWarn, "cluster: %zu changes not shared: more than %zu waited for Redis", dropped_,
                kMaxOutbox);
      dropped_ = 0;
    }
  }
  if (batch.empty())
    return;
  flushing_ = true;
  auto left = std::make_shared<size_t>(batch.size());
  for (Change& change : batch) {
    const std::string& name = channels_[change.channel].channel.name;
    std::vector<std::string> xadd = {"XADD", StreamKey(name), "MAXLEN",      "~",   kStreamCap,
                                     "*",    "node",          options_.node, "key", change.key};
    if (change.value)
      xadd.insert(xadd.end(), {"value", *change.value});
    std::vector<std::string> state =
        change.value ? std::vector<std::string>{"HSET", HashKey(name), change.key, *change.value}
                     : std::vector<std::string>{"HDEL", HashKey(name), change.key};
    redis_->Command(std::move(state), [](bool, redis::Reply, const std::string&) {});
    redis_->Command(std::move(xadd), [this, change, left, alive = alive_](
                                         bool ok, redis::Reply, const std::string&) mutable {
      if (!*alive)
        return;
      if (ok) {
        ++sent_;
      } else {
        // Back in line for the next connection, ahead of what came since: the answers come
        // in the order the changes were sent, so retry_ keeps it.
        retry_.push_back(std::move(change));
      }
      if (--*left == 0)
        flushing_ = false;
    });
  }
}

}  // namespace spate::delivery
