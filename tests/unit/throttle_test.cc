// tests/unit/throttle_test.cc
//
// GCRA (delivery/throttle.h) on a fake clock: a rate holds exactly over many cells, a burst
// goes at once and then the spacing applies, idle time refills the burst and no more, and a
// new rate never lets through what the old one had not.
#include "delivery/throttle.h"

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

namespace spate::delivery {
namespace {

using namespace std::chrono_literals;
using Clock = Gcra::Clock;

// Takes `n` cells, each as soon as it is allowed; the times they went.
std::vector<Clock::duration> TakeAsSoonAsAllowed(Gcra& g, Clock::time_point start, int n) {
  std::vector<Clock::duration> at;
  Clock::time_point now = start;
  while (static_cast<int>(at.size()) < n) {
    const Clock::duration wait = g.TryTake(now);
    if (wait == Clock::duration::zero()) {
      at.push_back(now - start);
    } else {
      now += wait;
    }
  }
  return at;
}

TEST(GcraTest, TwentyPerSecondHoldsOverTwoHundredCells) {
  Gcra g(20, 1s);
  const auto at = TakeAsSoonAsAllowed(g, Clock::time_point(1h), 200);
  EXPECT_EQ(at.front(), 0s);
  EXPECT_EQ(at[1], 50ms);
  EXPECT_EQ(at.back(), 199 * 50ms) << "200 cells in 9.95 s: 20 per second, exactly";
}

TEST(GcraTest, ABurstGoesAtOnceThenTheSpacingApplies) {
  Gcra g(10, 1s, /*burst=*/5);
  const auto at = TakeAsSoonAsAllowed(g, Clock::time_point(1h), 8);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(at[i], 0s) << i;
  EXPECT_EQ(at[5], 100ms);
  EXPECT_EQ(at[6], 200ms);
  EXPECT_EQ(at[7], 300ms);
}

TEST(GcraTest, IdleTimeRefillsTheBurstAndNoMore) {
  Gcra g(10, 1s, /*burst=*/3);
  const Clock::time_point t0(1h);
  TakeAsSoonAsAllowed(g, t0, 10);
  // A minute of nothing: three at once again, not six hundred.
  const Clock::time_point later = t0 + 61s;
  const auto at = TakeAsSoonAsAllowed(g, later, 5);
  EXPECT_EQ(at[0], 0s);
  EXPECT_EQ(at[1], 0s);
  EXPECT_EQ(at[2], 0s);
  EXPECT_EQ(at[3], 100ms);
  EXPECT_EQ(at[4], 200ms);
}

TEST(GcraTest, WaitAtSaysWhenWithoutTaking) {
  Gcra g(2, 1s);
  const Clock::time_point t(1h);
  EXPECT_EQ(g.WaitAt(t), 0s);
  EXPECT_EQ(g.WaitAt(t), 0s) << "asking takes nothing";
  EXPECT_EQ(g.TryTake(t), 0s);
  EXPECT_EQ(g.WaitAt(t), 500ms);
  EXPECT_EQ(g.TryTake(t + 200ms), 300ms) << "refused: nothing taken";
  EXPECT_EQ(g.TryTake(t + 500ms), 0s);
}

TEST(GcraTest, PerMinuteAndPerHourRates) {
  EXPECT_EQ(Gcra(100, 1min).interval(), 600ms);
  EXPECT_EQ(Gcra(3600, 1h).interval(), 1s);
  EXPECT_GT(Gcra(1000000000, 1ns).interval(), Clock::duration::zero()) << "never a zero spacing";
}

// An automation rule lowers the rate: the cells already taken stay taken, and the next one
// waits the new spacing from where the old schedule stood (no burst slips through).
TEST(GcraTest, ALowerRateAppliesFromTheNextCell) {
  Gcra g(100, 1s, /*burst=*/10);
  const Clock::time_point t(1h);
  TakeAsSoonAsAllowed(g, t, 10);  // the burst, all at t
  g.SetRate(1, 1s);               // burst 1 from now on
  EXPECT_GT(g.WaitAt(t), 0s);
  const auto at = TakeAsSoonAsAllowed(g, t, 3);
  EXPECT_EQ(at[1] - at[0], 1s);
  EXPECT_EQ(at[2] - at[1], 1s);
}

}  // namespace
}  // namespace spate::delivery
