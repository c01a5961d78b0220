#include "core/clock.h"

namespace spate {

namespace {
class RealClock final : public Clock {
 public:
  SteadyTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }
};
}  // namespace

Clock& Clock::Real() {
  static RealClock clock;
  return clock;
}

ManualClock::ManualClock()
    : steady_(std::chrono::steady_clock::now()), wall_(std::chrono::system_clock::now()) {}

}  // namespace spate
