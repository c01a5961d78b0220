#include "delivery/throttle.h"

#include <algorithm>

#include "core/check.h"

namespace spate::delivery {

Gcra::Gcra(uint32_t count, Clock::duration period, uint32_t burst) {
  SetRate(count, period, burst);
}

void Gcra::SetRate(uint32_t count, Clock::duration period, uint32_t burst) {
  SPATE_CHECK(count > 0 && period.count() > 0 && burst >= 1);
  interval_ = std::max<Clock::duration>(period / count, Clock::duration(1));
  tolerance_ = interval_ * (burst - 1);
}

Gcra::Clock::duration Gcra::WaitAt(Clock::time_point now) const {
  // Allowed once now >= tat - tolerance (TM 4.1 §4.4.2, virtual scheduling).
  const Clock::time_point allowed_at = tat_ - tolerance_;
  return now >= allowed_at ? Clock::duration::zero() : allowed_at - now;
}

Gcra::Clock::duration Gcra::TryTake(Clock::time_point now) {
  if (const Clock::duration wait = WaitAt(now); wait > Clock::duration::zero())
    return wait;
  tat_ = std::max(tat_, now) + interval_;
  return Clock::duration::zero();
}

}  // namespace spate::delivery
