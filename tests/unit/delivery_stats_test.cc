// tests/unit/delivery_stats_test.cc
//
// delivery::Stats: the bounded per-domain counter table of one shard, read by the metrics
// exporter from another thread.
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/counter.h"
#include "delivery/stats.h"

namespace spate::delivery {
namespace {

TEST(DomainStatsTest, DomainsBeyondTheBoundCountAsOther) {
  Stats stats(3);
  DomainStats& a = stats.ForDomain("a.example");
  DomainStats& b = stats.ForDomain("b.example");
  DomainStats& c = stats.ForDomain("c.example");
  EXPECT_EQ(&stats.ForDomain("a.example"), &a);
  EXPECT_NE(&a, &b);
  EXPECT_NE(&b, &c);
  DomainStats& d = stats.ForDomain("d.example");
  DomainStats& e = stats.ForDomain("e.example");
  EXPECT_EQ(d.domain, "other");
  EXPECT_EQ(&d, &e);
  EXPECT_EQ(&stats.ForDomain("c.example"), &c);  // known domains keep their entry

  a.delivered.Add();
  a.delivered.Add(2);
  d.failed.Add();
  e.failed.Add();
  for (int i = 0; i < 1000; ++i) {
    stats.ForDomain("z" + std::to_string(i) + ".example").deferred.Add();
  }
  c.queued.Set(5);
  c.queued.Add(-2);

  std::multiset<std::string> names;
  uint64_t other_failed = 0;
  uint64_t other_deferred = 0;
  stats.ForEachDomain([&](const DomainStats& s) {
    names.insert(s.domain);
    if (s.domain == "a.example") {
      EXPECT_EQ(s.delivered.Get(), 3u);
    }
    if (s.domain == "c.example") {
      EXPECT_EQ(s.queued.Get(), 3);
    }
    if (s.domain == "other") {
      other_failed = s.failed.Get();
      other_deferred = s.deferred.Get();
    }
  });
  EXPECT_EQ(names, (std::multiset<std::string>{"a.example", "b.example", "c.example", "other"}));
  EXPECT_EQ(other_failed, 2u);
  EXPECT_EQ(other_deferred, 1000u);
}

TEST(DomainStatsTest, ReadersOnAnotherThreadSeeEveryEntryOnce) {
  Stats stats(50);
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    for (int i = 0; i < 200; ++i) {
      stats.ForDomain("w" + std::to_string(i) + ".example").delivered.Add();
    }
    writing = false;
  });
  size_t max_seen = 0;
  while (writing) {
    std::set<std::string> names;
    size_t n = 0;
    stats.ForEachDomain([&](const DomainStats& s) {
      names.insert(s.domain);
      ++n;
    });
    EXPECT_EQ(names.size(), n);  // no entry twice
    max_seen = std::max(max_seen, n);
  }
  writer.join();
  size_t n = 0;
  stats.ForEachDomain([&](const DomainStats&) { ++n; });
  EXPECT_EQ(n, 51u);  // 50 domains and "other"
  EXPECT_LE(max_seen, 51u);
}

// The oldest-age metric's bookkeeping: a recipient counted in on one shard and out on another
// leaves nothing behind; the oldest is the first acceptance of the oldest minute still queued.
TEST(QueueAgesTest, TheOldestIsTheEarliestStillQueuedAndLeavingClearsIt) {
  QueueAges ages(10);
  auto oldest = [&] {
    std::map<std::string, int64_t> out;
    ages.ForEachOldest([&](const std::string& d, int64_t ms) { out[d] = ms; });
    return out;
  };
  const int64_t t0 = 1764600000000;  // on a minute boundary
  ages.Add("a.example", t0 + 1500, 2);
  ages.Add("a.example", t0 + 61000, 1);  // the next minute
  ages.Add("b.example", t0 + 5000, 1);
  ages.Add("a.example", 0, 5);  // unknown acceptance time: not counted
  EXPECT_EQ(oldest(),
            (std::map<std::string, int64_t>{{"a.example", t0 + 1500}, {"b.example", t0 + 5000}}));
  std::thread other([&] { ages.Add("a.example", t0 + 1500, -2); });  // delivered elsewhere
  other.join();
  EXPECT_EQ(oldest()["a.example"], t0 + 61000);
  ages.Add("a.example", t0 + 61000, -1);
  ages.Add("b.example", t0 + 5000, -1);
  EXPECT_TRUE(oldest().empty()) << "an empty queue has no oldest";
  ages.Add("b.example", t0 + 5000, -1);  // more out than in: ignored, never negative
  ages.Add("b.example", t0 + 7000, 1);
  EXPECT_EQ(oldest()["b.example"], t0 + 7000);
}

TEST(QueueAgesTest, DomainsPastTheBoundAgeAsOtherAndLeaveIt) {
  QueueAges ages(2);
  const int64_t t = 1764600000000;
  ages.Add("a.example", t, 1);
  ages.Add("b.example", t, 1);
  ages.Add("c.example", t + 1000, 1);  // past the bound
  std::map<std::string, int64_t> seen;
  ages.ForEachOldest([&](const std::string& d, int64_t ms) { seen[d] = ms; });
  EXPECT_EQ(seen.count("c.example"), 0u);
  EXPECT_EQ(seen["other"], t + 1000);
  ages.Add("c.example", t + 1000, -1);
  seen.clear();
  ages.ForEachOldest([&](const std::string& d, int64_t ms) { seen[d] = ms; });
  EXPECT_EQ(seen.count("other"), 0u) << "it left the entry it joined";
  EXPECT_EQ(seen.size(), 2u);
}

TEST(HistogramTest, ObservationsFallInTheFirstBucketThatHoldsThem) {
  static constexpr double kBounds[] = {0.1, 1, 10};
  Histogram h(kBounds);
  for (double v : {0.05, 0.1, 0.5, 1.0, 9.0, 11.0, 1000.0})
    h.Observe(v);
  EXPECT_EQ(h.bounds().size(), 3u);
  EXPECT_EQ(h.bucket(0), 2u) << "le=0.1 holds 0.05 and 0.1 itself";
  EXPECT_EQ(h.bucket(1), 2u);
  EXPECT_EQ(h.bucket(2), 1u);
  EXPECT_EQ(h.bucket(3), 2u) << "+Inf";
  EXPECT_EQ(h.count(), 7u);
  EXPECT_NEAR(h.sum(), 1021.65, 1e-6);
}

}  // namespace
}  // namespace spate::delivery
