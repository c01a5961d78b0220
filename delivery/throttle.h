// delivery/throttle.h
//
// Rate limits for shaping (issue 11: max_message_rate, max_connection_rate and the
// provider-wide ones) as GCRA, the generic cell rate algorithm (ATM Forum TM 4.1, the
// "virtual scheduling" form; what redis-cell and KumoMTA's throttles use): a rate of `count`
// per `period` spaces cells `period / count` apart, and `burst` cells may come at once before
// the spacing applies. One time stamp of state (the theoretical arrival time), O(1) per
// decision, no timer and no queue: the caller asks when it may go, and waits that long.
//
// Times are steady-clock points the caller passes in (the reactor's now()), so a test drives
// it with a fake clock.
// SharedGcra is the same decision on one atomic time stamp, for a limit every shard's sites
// share (provider_max_message_rate), and ProviderLimits keeps one per provider with the
// provider's open connections (provider_connection_limit). Issue 15 puts the same state in
// Redis for a fleet of nodes.
// Threading: Gcra: one owner (a site on its shard); not thread-safe. SharedGcra and
// ProviderLimits: any thread, lock-free but for ProviderLimits::For (a mutex, once per site).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>

namespace spate::delivery {

class Gcra {
 public:
  using Clock = std::chrono::steady_clock;

  // `count` cells per `period` (both > 0), up to `burst` (>= 1) at once.
  Gcra(uint32_t count, Clock::duration period, uint32_t burst = 1);

  // Takes a cell at `now` when the rate allows it and returns zero; otherwise takes nothing
  // and returns how long until one is allowed (> 0).
  Clock::duration TryTake(Clock::time_point now);
  // How long until a cell would be allowed; zero: now. Takes nothing.
  Clock::duration WaitAt(Clock::time_point now) const;

  // A new rate (an automation rule's SetConfig, a reload): what was taken stays taken, so a
  // lower rate does not let a burst through and a higher one applies from the next cell.
  void SetRate(uint32_t count, Clock::duration period, uint32_t burst = 1);

  Clock::duration interval() const { return interval_; }

 private:
  Clock::duration interval_;   // period / count: the spacing of cells
  Clock::duration tolerance_;  // interval * (burst - 1): how far ahead cells may be taken
  Clock::time_point tat_{};    // theoretical arrival time of the next cell
};

// GCRA with its rate given at each call (limits change with a reload) and the state shared by
// threads: a compare-and-swap on the theoretical arrival time, so two shards never both take
// the last cell.
class SharedGcra {
 public:
  using Clock = Gcra::Clock;
  // One cell every `interval` (> 0), no burst. Zero when taken; else the wait, taking nothing.
  Clock::duration TryTake(Clock::time_point now, Clock::duration interval);
  Clock::duration WaitAt(Clock::time_point now) const;

 private:
  std::atomic<int64_t> tat_ns_{0};  // steady-clock nanoseconds
};

// The state of the provider-wide limits ([provider] provider_connection_limit and
// provider_max_message_rate), one entry per provider name, shared by every shard's sites of
// that provider. Entries are never removed (one per provider in the shaping file).
class ProviderLimits {
 public:
  struct Entry {
    std::atomic<int64_t> connections{0};  // open now, over every site of the provider
    SharedGcra messages;
    // A connection may be opened while fewer than `limit` are; it then counts. False: none.
    bool TryOpen(unsigned limit);
    void Closed() { connections.fetch_sub(1, std::memory_order_relaxed); }
  };
  // Stable for the life of this object.
  Entry& For(const std::string& provider);

 private:
  std::mutex mu_;
  std::map<std::string, Entry*, std::less<>> index_;  // guarded by mu_
  std::deque<Entry> entries_;                         // guarded by mu_; stable addresses
};

}  // namespace spate::delivery
