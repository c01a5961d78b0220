// core/stats.h
//
// Hot counters, one ShardStats per shard. The owning shard is the only writer: an increment is
// a relaxed load and store (no locked instruction, no shared cache line with other shards). The
// metrics exporter reads them from its own thread at scrape time.
//
// Per-domain counters live on the shard that owns the domain. Their number is bounded: after
// `max_domains` distinct domains, the rest are counted under "other", so a million-domain
// campaign cannot blow up the label cardinality. Adding a domain takes a mutex (rare, cold);
// counting on an existing domain takes none.
// Threading: writers on the owning shard only; readers (Snapshot*) on any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace spate {

class Counter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A gauge set by its single writer.
class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n) { Set(Get() + n); }
  int64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

struct DomainStats {
  std::string domain;
  Counter delivered;
  Counter deferred;
  Counter failed;
  Gauge queued;       // recipients waiting on this shard for the domain
  Gauge connections;  // open outbound connections
};

class ShardStats {
 public:
  explicit ShardStats(size_t max_domains) : max_domains_(max_domains) {}

  // Submission side.
  Counter messages_received;  // messages acknowledged with 250 (durable)
  Counter recipients_received;
  Counter connections_accepted;
  Counter connections_refused;  // over [server] max_connections(_per_client): 421 at accept
  Gauge connections_inbound;

  // Owning shard only. The entry for `domain` (lower case), or for "other" past the bound.
  DomainStats& ForDomain(std::string_view domain);

  // Any thread.
  void ForEachDomain(const std::function<void(const DomainStats&)>& fn) const;

 private:
  size_t max_domains_;
  std::unordered_map<std::string, DomainStats*> index_;  // owning shard only
  mutable std::mutex mu_;                                // guards entries_' growth
  std::deque<DomainStats> entries_;                      // stable addresses
};

}  // namespace spate
