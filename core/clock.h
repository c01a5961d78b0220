// core/clock.h
//
// Clock is where a reactor reads time: the steady clock for timers and timeouts, the wall clock
// for what is stored or shown (retry times in the spool, Received: dates). The daemon uses the
// real clocks; component tests give a reactor a ManualClock and move time on themselves, so an
// idle timeout, a backoff or a greeting delay is tested without sleeping.
// Threading: RealClock is stateless (any thread). A ManualClock is read by its reactor's thread
// and moved on by the test on that same thread, between loop turns.
#pragma once

#include <chrono>
#include <cstdint>

namespace spate {

using Seconds = std::chrono::duration<double>;

class Clock {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  using WallTime = std::chrono::system_clock::time_point;

  virtual ~Clock() = default;
  virtual SteadyTime Now() const = 0;
  virtual WallTime WallNow() const = 0;

  // Wall-clock milliseconds since the epoch (the spool's unit for retry times).
  int64_t WallMs() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(WallNow().time_since_epoch())
        .count();
  }

  // The process-wide real clock.
  static Clock& Real();
};

class ManualClock final : public Clock {
 public:
  // Starts at the real clocks' current readings, so wall times look like today's.
  ManualClock();
  SteadyTime Now() const override { return steady_; }
  WallTime WallNow() const override { return wall_; }
  // Moves both clocks on by `d`.
  void Advance(std::chrono::nanoseconds d) {
    steady_ += d;
    wall_ += std::chrono::duration_cast<WallTime::duration>(d);
  }

 private:
  SteadyTime steady_;
  WallTime wall_;
};

}  // namespace spate
