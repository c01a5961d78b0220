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
// Threading: one owner (a site on its shard); not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

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

}  // namespace spate::delivery
