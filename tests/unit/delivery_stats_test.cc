// tests/unit/delivery_stats_test.cc
//
// delivery::Stats: the bounded per-domain counter table of one shard, read by the metrics
// exporter from another thread.
#include <atomic>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace spate::delivery
