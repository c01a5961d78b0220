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

SharedGcra::Clock::duration SharedGcra::WaitAt(Clock::time_point now) const {
  const int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const int64_t tat = tat_ns_.load(std::memory_order_acquire);
  return now_ns >= tat
             ? Clock::duration::zero()
             : std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(tat - now_ns));
}

SharedGcra::Clock::duration SharedGcra::TryTake(Clock::time_point now, Clock::duration interval) {
  const int64_t now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const int64_t step =
      std::max<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count(), 1);
  int64_t tat = tat_ns_.load(std::memory_order_acquire);
  for (;;) {
    if (now_ns < tat)
      return std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(tat - now_ns));
    // The next cell is due `step` after now: the one taken now is the only one until then.
    if (tat_ns_.compare_exchange_weak(tat, now_ns + step, std::memory_order_acq_rel))
      return Clock::duration::zero();
  }
}

bool ProviderLimits::Entry::TryOpen(unsigned limit) {
  int64_t n = connections.load(std::memory_order_relaxed);
  do {
    if (n >= static_cast<int64_t>(limit))
      return false;
  } while (!connections.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

ProviderLimits::Entry& ProviderLimits::For(const std::string& provider) {
  std::lock_guard lock(mu_);
  auto it = index_.find(provider);
  if (it != index_.end())
    return *it->second;
  Entry& e = entries_.emplace_back();
  index_.emplace(provider, &e);
  return e;
}

}  // namespace spate::delivery
