// delivery/stats.h
//
// Delivery's hot counters on one shard: per destination domain, delivered / deferred / failed,
// recipients queued and connections open. The owning shard is the only writer (core/counter.h);
// the metrics exporter reads them at scrape time from its own thread.
//
// Their number is bounded: after `max_domains` distinct domains, the rest are counted under
// "other", so a million-domain campaign cannot blow up the label cardinality. An entry outlives
// its destination (counters never go back); adding one takes a mutex (rare, cold), counting on
// an existing one takes none.
// Threading: writers on the owning shard only; readers (ForEachDomain) on any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/counter.h"

namespace spate::delivery {

struct DomainStats {
  std::string domain;
  Counter delivered;
  Counter deferred;
  Counter failed;
  Gauge queued;       // recipients waiting on this shard for the domain
  Gauge connections;  // open outbound connections
};

class Stats {
 public:
  explicit Stats(size_t max_domains) : max_domains_(max_domains) {}

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

}  // namespace spate::delivery
