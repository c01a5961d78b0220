// tests/unit/ready_queue_test.cc
//
// delivery/ready_queue.h: the highest priority goes first, first in first out within one;
// every 8th pop takes the lowest priority waiting, so bulk mail moves under a steady stream of
// priority mail (no starvation); zero goes before negatives; Drain() hands over every job and
// leaves the queue empty; size() stays right throughout.
#include "delivery/ready_queue.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace spate::delivery {
namespace {

// A job of a message of `priority`, told apart by `tag` (its due_ms).
Job MakeJob(int8_t priority, int64_t tag) {
  auto m = std::make_shared<Message>();
  m->priority = priority;
  Job j;
  j.message = m;
  j.due_ms = tag;
  return j;
}

struct Popped {
  int priority;
  int64_t tag;
  bool operator==(const Popped&) const = default;
};

std::vector<Popped> PopAll(ReadyQueue& q) {
  std::vector<Popped> out;
  while (!q.empty()) {
    const size_t before = q.size();
    Job j = q.pop();
    EXPECT_EQ(q.size(), before - 1);
    out.push_back({ReadyQueue::PriorityOf(j), j.due_ms});
  }
  return out;
}

TEST(ReadyQueue, TheHighestPriorityGoesFirstAndEachPriorityInOrder) {
  ReadyQueue q;
  EXPECT_TRUE(q.empty());
  q.push_back(MakeJob(0, 1));
  q.push_back(MakeJob(5, 2));
  q.push_back(MakeJob(-3, 3));
  q.push_back(MakeJob(5, 4));
  q.push_back(MakeJob(9, 5));
  q.push_back(MakeJob(0, 6));
  q.push_back(MakeJob(-3, 7));
  EXPECT_EQ(q.size(), 7u);
  EXPECT_FALSE(q.empty());
  const std::vector<Popped> want = {{9, 5}, {5, 2}, {5, 4}, {0, 1}, {0, 6}, {-3, 3}, {-3, 7}};
  EXPECT_EQ(PopAll(q), want);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
}

TEST(ReadyQueue, AJobWithNoMessageIsPriorityZero) {
  Job j;
  EXPECT_EQ(ReadyQueue::PriorityOf(j), 0);
  ReadyQueue q;
  q.push_back(std::move(j));
  q.push_back(MakeJob(1, 2));
  EXPECT_EQ(ReadyQueue::PriorityOf(q.pop()), 1);
  EXPECT_EQ(q.pop().message, nullptr);
  EXPECT_TRUE(q.empty());
}

TEST(ReadyQueue, EveryEighthPopIsBulkUnderASteadyStreamOfPriorityMail) {
  ReadyQueue q;
  for (int i = 0; i < 100; ++i)
    q.push_back(MakeJob(0, i));
  int64_t next_tag = 1000;
  std::vector<int64_t> bulk;  // tags of the priority-0 jobs, in the order they went
  for (int n = 1; n <= 800; ++n) {
    q.push_back(MakeJob(9, next_tag++));  // always one more priority job waiting
    Job j = q.pop();
    const int p = ReadyQueue::PriorityOf(j);
    if (n % ReadyQueue::kFairEvery == 0) {
      ASSERT_EQ(p, 0) << "pop " << n;
      bulk.push_back(j.due_ms);
    } else {
      ASSERT_EQ(p, 9) << "pop " << n;
    }
  }
  ASSERT_EQ(bulk.size(), 100u);
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(bulk[i], i) << "bulk in the order it came";
  EXPECT_EQ(q.size(), 100u) << "800 pushed, 700 of them taken";
}

TEST(ReadyQueue, ZeroGoesBeforeNegativesAndTheFairPopTakesTheLowest) {
  ReadyQueue q;
  q.push_back(MakeJob(-5, 1));
  q.push_back(MakeJob(-1, 2));
  q.push_back(MakeJob(0, 3));
  q.push_back(MakeJob(0, 4));
  const std::vector<Popped> want = {{0, 3}, {0, 4}, {-1, 2}, {-5, 1}};
  EXPECT_EQ(PopAll(q), want);

  // A fresh queue: its 8th pop is the fair one.
  ReadyQueue r;
  for (int i = 0; i < 10; ++i)
    r.push_back(MakeJob(0, i));
  r.push_back(MakeJob(-9, 100));
  r.push_back(MakeJob(-1, 101));
  std::vector<Popped> got = PopAll(r);
  ASSERT_EQ(got.size(), 12u);
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(got[i], (Popped{0, i})) << i;
  EXPECT_EQ(got[7], (Popped{-9, 100})) << "the 8th pop: the lowest priority waiting";
  EXPECT_EQ(got[8], (Popped{0, 7}));
  EXPECT_EQ(got[9], (Popped{0, 8}));
  EXPECT_EQ(got[10], (Popped{0, 9}));
  EXPECT_EQ(got[11], (Popped{-1, 101}));
}

TEST(ReadyQueue, TheFairPopTakesTheLowestPositiveWhenNothingLowerWaits) {
  ReadyQueue q;
  for (int i = 0; i < 10; ++i)
    q.push_back(MakeJob(9, i));
  q.push_back(MakeJob(2, 100));
  const std::vector<Popped> got = PopAll(q);
  ASSERT_EQ(got.size(), 11u);
  EXPECT_EQ(got[7], (Popped{2, 100}));
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(got[i], (Popped{9, i}));
  EXPECT_EQ(got[8], (Popped{9, 7}));
}

TEST(ReadyQueue, DrainGivesEveryJobAndLeavesItEmpty) {
  ReadyQueue q;
  std::vector<int64_t> pushed;
  const int8_t kPriorities[] = {0, 3, -2, 0, 9, -9, 3, 0};
  for (int i = 0; i < 8; ++i) {
    q.push_back(MakeJob(kPriorities[i], i));
    pushed.push_back(i);
  }
  EXPECT_EQ(q.size(), 8u);
  std::vector<int64_t> drained;
  q.Drain([&](Job&& j) {
    ASSERT_NE(j.message, nullptr);
    drained.push_back(j.due_ms);
  });
  std::sort(drained.begin(), drained.end());
  EXPECT_EQ(drained, pushed);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);

  // Usable again afterwards.
  q.push_back(MakeJob(3, 50));
  q.push_back(MakeJob(0, 51));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.pop().due_ms, 50);
  EXPECT_EQ(q.pop().due_ms, 51);
  EXPECT_TRUE(q.empty());
}

TEST(ReadyQueue, SizeStaysRightThroughPushesPopsAndClear) {
  ReadyQueue q;
  size_t expect = 0;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 5; ++i) {
      q.push_back(MakeJob(static_cast<int8_t>((round * 5 + i) % 19 - 9), round * 10 + i));
      ++expect;
    }
    for (int i = 0; i < 3; ++i) {
      q.pop();
      --expect;
    }
    ASSERT_EQ(q.size(), expect) << round;
  }
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  q.push_back(MakeJob(-4, 1));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(ReadyQueue::PriorityOf(q.pop()), -4);
}

}  // namespace
}  // namespace spate::delivery
