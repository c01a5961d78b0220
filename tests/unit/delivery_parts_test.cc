// tests/unit/delivery_parts_test.cc
//
// The parts of the delivery engine one by one: the Scheduler (time buckets on a reactor driven
// by a ManualClock), the Dispatcher (two shards' reactors on the test thread, each with an
// engine whose routing records what it is asked and has no route, so every job it gets comes
// back as Defer calls to its FakeSpool), and job.h's RecipientList and Message.
//
// Memory claims (one body and one envelope for every job of a message; one recipient inline)
// are checked by counting this thread's heap allocations: this file replaces the global
// operator new for the whole test binary, counting only while a test asks it to.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/clock.h"
#include "core/reactor.h"
#include "core/shard.h"
#include "delivery/delivery.h"
#include "delivery/dispatcher.h"
#include "delivery/job.h"
#include "delivery/options.h"
#include "delivery/routing.h"
#include "delivery/scheduler.h"
#include "delivery/stats.h"
#include "queue/spool.h"
#include "tests/unit/fake_spool.h"

namespace {
// Allocations made on this thread while `counting` is set.
thread_local bool counting = false;
thread_local size_t counted_allocations = 0;
thread_local size_t counted_bytes = 0;
thread_local size_t counted_large = 0;  // of at least `large_size` bytes
thread_local size_t large_size = 0;
}  // namespace

// Not inlined: inlined into a caller, free() would meet a pointer from a new-expression and
// g++ would warn (-Wmismatched-new-delete) about a pairing that is right.
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (counting) {
    ++counted_allocations;
    counted_bytes += n;
    if (large_size > 0 && n >= large_size)
      ++counted_large;
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr)
    throw std::bad_alloc();
  return p;
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
// The array forms too (a sanitizer's runtime would otherwise supply its own).
void* operator new[](std::size_t n) {
  return ::operator new(n);
}
void operator delete[](void* p) noexcept {
  ::operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  ::operator delete(p);
}

namespace spate::delivery {
namespace {

using namespace std::chrono_literals;

// Counts this thread's allocations for its life; allocations of `large` bytes or more apart.
class AllocationCount {
 public:
  explicit AllocationCount(size_t large = 0) {
    counted_allocations = counted_bytes = counted_large = 0;
    large_size = large;
    counting = true;
  }
  ~AllocationCount() { Stop(); }
  void Stop() { counting = false; }
  size_t allocations() const { return counted_allocations; }
  size_t bytes() const { return counted_bytes; }
  size_t large() const { return counted_large; }
};

MessageRef MessageWithId(queue::MessageId id) {
  auto m = std::make_shared<Message>();
  m->id = id;
  m->AddRecipient("r@example.test", 0);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Scheduler

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Reactor::Create(64, &clock_);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    reactor_ = std::move(r).value();
    scheduler_ = std::make_unique<Scheduler>(*reactor_, [this](Job&& job) {
      released_.push_back({job.message->id, clock_.WallMs()});
    });
  }
  void TearDown() override { scheduler_.reset(); }

  // A job tagged `id`, due `after` from the manual wall clock's now.
  Job JobDueIn(queue::MessageId id, std::chrono::milliseconds after) {
    Job job;
    job.message = MessageWithId(id);
    job.recipients.push_back({0, 0});
    job.due_ms = clock_.WallMs() + after.count();
    due_[id] = job.due_ms;
    return job;
  }
  // One loop turn at the current time (timers due by now fire).
  void Turn() { reactor_->RunOnce(reactor_->now()); }
  void Advance(std::chrono::nanoseconds d) {
    clock_.Advance(d);
    Turn();
  }
  std::vector<queue::MessageId> ReleasedIds() const {
    std::vector<queue::MessageId> ids;
    for (const auto& r : released_)
      ids.push_back(r.id);
    return ids;
  }

  struct Released {
    queue::MessageId id;
    int64_t at_ms;  // wall clock when released
  };
  ManualClock clock_;
  std::unique_ptr<Reactor> reactor_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<Released> released_;
  std::map<queue::MessageId, int64_t> due_;
};

TEST_F(SchedulerTest, ReleasesNothingEarlyAndAtMostOneBucketLate) {
  const int64_t offsets_ms[] = {1, 37, 99, 100, 101, 150, 199, 250, 777, 1000};
  queue::MessageId id = 0;
  for (int64_t off : offsets_ms)
    scheduler_->Add(JobDueIn(++id, std::chrono::milliseconds(off)));
  EXPECT_EQ(scheduler_->size(), std::size(offsets_ms));
  // Time moves on 1 ms per turn.
  for (int ms = 0; ms < 1300 && released_.size() < std::size(offsets_ms); ++ms)
    Advance(1ms);

  ASSERT_EQ(released_.size(), std::size(offsets_ms));
  for (const Released& r : released_) {
    EXPECT_GE(r.at_ms, due_[r.id]) << "job " << r.id << " early";
    EXPECT_LE(r.at_ms, due_[r.id] + Scheduler::kGranularityMs + 1) << "job " << r.id << " late";
  }
  EXPECT_EQ(scheduler_->size(), 0u);
}

TEST_F(SchedulerTest, ReleasesInDueOrderAcrossBuckets) {
  const int64_t offsets_ms[] = {500, 120, 900, 300, 20, 5000};
  queue::MessageId id = 0;
  for (int64_t off : offsets_ms)
    scheduler_->Add(JobDueIn(++id, std::chrono::milliseconds(off)));
  Advance(1s);  // everything but the last is due, long since
  EXPECT_EQ(ReleasedIds(), (std::vector<queue::MessageId>{5, 2, 4, 1, 3}));
  EXPECT_EQ(scheduler_->size(), 1u);
}

TEST_F(SchedulerTest, EarlierJobAddedAfterALaterOneIsNotHeldBack) {
  scheduler_->Add(JobDueIn(1, 5s));
  Advance(10ms);
  scheduler_->Add(JobDueIn(2, 200ms));
  Advance(150ms);
  EXPECT_TRUE(released_.empty());
  Advance(160ms);
  EXPECT_EQ(ReleasedIds(), std::vector<queue::MessageId>{2});
  Advance(4s);
  EXPECT_EQ(ReleasedIds(), std::vector<queue::MessageId>{2});
  Advance(1s);
  EXPECT_EQ(ReleasedIds(), (std::vector<queue::MessageId>{2, 1}));
}

// An operator's flush: the chosen jobs go at the next loop turn, the others keep their time.
TEST_F(SchedulerTest, AFlushReleasesTheChosenJobsNowAndKeepsTheOthers) {
  scheduler_->Add(JobDueIn(1, 1h));
  scheduler_->Add(JobDueIn(2, 2h));
  scheduler_->Add(JobDueIn(3, 30min));
  EXPECT_EQ(scheduler_->Flush([](const Job& j) { return j.message->id != 2; }), 2u);
  EXPECT_EQ(scheduler_->size(), 3u) << "still held until released";
  Advance(1ms);
  EXPECT_EQ(ReleasedIds(), (std::vector<queue::MessageId>{3, 1})) << "in the order they were due";
  EXPECT_EQ(scheduler_->size(), 1u);
  EXPECT_EQ(scheduler_->Flush([](const Job&) { return false; }), 0u);
  Advance(1h);
  EXPECT_EQ(ReleasedIds().size(), 2u) << "job 2 keeps its time";
  Advance(1h + 200ms);
  EXPECT_EQ(ReleasedIds(), (std::vector<queue::MessageId>{3, 1, 2}));
}

TEST_F(SchedulerTest, ReleasesAtMostABatchPerLoopTurn) {
  const size_t total = 2 * Scheduler::kBatch + 10;
  for (size_t i = 1; i <= total; ++i)
    scheduler_->Add(JobDueIn(i, 50ms));
  Advance(1s);
  EXPECT_EQ(released_.size(), Scheduler::kBatch);
  EXPECT_EQ(scheduler_->size(), total - Scheduler::kBatch);
  Turn();  // the clock stood still: the rest was due already
  EXPECT_EQ(released_.size(), 2 * Scheduler::kBatch);
  Turn();
  EXPECT_EQ(released_.size(), total);
  EXPECT_EQ(scheduler_->size(), 0u);
  // In the order they were added (one bucket).
  for (size_t i = 0; i < total; ++i)
    ASSERT_EQ(released_[i].id, i + 1);
}

TEST_F(SchedulerTest, ClearDropsEveryJob) {
  scheduler_->Add(JobDueIn(1, 100ms));
  scheduler_->Add(JobDueIn(2, 10s));
  scheduler_->Clear();
  EXPECT_EQ(scheduler_->size(), 0u);
  Advance(20s);
  EXPECT_TRUE(released_.empty());
  // And it works on after.
  scheduler_->Add(JobDueIn(3, 100ms));
  Advance(300ms);
  EXPECT_EQ(ReleasedIds(), std::vector<queue::MessageId>{3});
}

// ---------------------------------------------------------------------------------------------
// Dispatcher

// Records the domains it is asked about; has no route for any.
class RecordingRouting final : public Routing {
 public:
  void Resolve(std::string_view domain, Done done) override {
    asked.emplace_back(domain);
    done(nullptr);
  }
  std::vector<std::string> asked;
};

class DispatcherTest : public ::testing::Test {
 protected:
  static constexpr ShardId kShards = 2;
  struct Shard {
    std::unique_ptr<Reactor> reactor;
    FakeSpool spool;
    RecordingRouting routing;
    Stats stats{100};
    std::unique_ptr<Delivery> delivery;  // last: gone before the rest
  };

  void SetUp() override {
    options_.log_deliveries = false;
    // No bounce rules: the classifier's lazy DFA grows by its own bound (delivery/bounce_class.h)
    // on new reply texts, and these tests count what dispatching allocates.
    static std::string rules_error;
    static const auto no_rules = Classifier::FromToml("[rules]\n", &rules_error);
    options_.classifier = &*no_rules;
    for (ShardId s = 0; s < kShards; ++s) {
      auto r = Reactor::Create(64, &clock_);
      ASSERT_TRUE(r.has_value()) << r.error().message();
      shards_[s].reactor = std::move(r).value();
      shards_[s].delivery =
          std::make_unique<Delivery>(*shards_[s].reactor, options_, shards_[s].spool,
                                     shards_[s].routing, shards_[s].stats, 100 + s);
      dispatcher_.Attach(s, shards_[s].reactor.get(), shards_[s].delivery.get());
    }
    for (ShardId s = 0; s < kShards; ++s) {
      for (int i = 0; domains_[s].size() < 2; ++i) {
        std::string d = "d" + std::to_string(i) + ".test";
        if (OwnerOf(d, kShards) == s)
          domains_[s].push_back(d);
      }
    }
  }
  void TearDown() override {
    for (Shard& s : shards_)
      s.delivery->Shutdown();
  }

  void Turn(ShardId s) { shards_[s].reactor->RunOnce(shards_[s].reactor->now()); }
  void Advance(std::chrono::nanoseconds d) {
    clock_.Advance(d);
    for (ShardId s = 0; s < kShards; ++s)
      Turn(s);
  }
  // The spool indices that shard `s` deferred for message `id`, sorted.
  std::vector<uint32_t> Deferred(ShardId s, queue::MessageId id) const {
    std::vector<uint32_t> out;
    for (const auto& d : shards_[s].spool.deferred()) {
      if (d.id == id)
        out.push_back(d.index);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  // The attempts and retry time shard `s` wrote for recipient `index` of `id`; -1: none.
  int Attempts(ShardId s, queue::MessageId id, uint32_t index) const {
    const FakeSpool::Deferred* d = DeferralOf(s, id, index);
    return d != nullptr ? d->attempts : -1;
  }
  int64_t NextAttempt(ShardId s, queue::MessageId id, uint32_t index) const {
    const FakeSpool::Deferred* d = DeferralOf(s, id, index);
    return d != nullptr ? d->next_attempt_ms : -1;
  }
  const FakeSpool::Deferred* DeferralOf(ShardId s, queue::MessageId id, uint32_t index) const {
    for (const auto& d : shards_[s].spool.deferred()) {
      if (d.id == id && d.index == index)
        return &d;
    }
    return nullptr;
  }

  ManualClock clock_;
  Options options_;
  Dispatcher dispatcher_{kShards, "pm@pm.test"};
  std::vector<std::string> domains_[kShards];  // two domains owned by each shard
  Shard shards_[kShards];
};

TEST_F(DispatcherTest, AcceptedMessageGoesToEachShardWithTheDomainsItOwns) {
  const std::string& a1 = domains_[0][0];
  const std::string& a2 = domains_[0][1];
  const std::string& b1 = domains_[1][0];
  const std::string& b2 = domains_[1][1];
  queue::NewMessage m;
  m.mail_from = "sender@origin.test";
  m.rcpt_to = {"u0@" + a1, "u1@" + b1, "u2@" + a2, "U3@" + a1, "u4@" + b2, "u5@" + b1};
  // The domain's case does not make it another destination.
  for (char& c : m.rcpt_to[3])
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  m.body = "Subject: hi\r\n\r\nhi\r\n";
  dispatcher_.DispatchAccepted(11, std::move(m));

  // Shard 0 gets its jobs in one loop turn, and nothing of shard 1's.
  Turn(0);
  EXPECT_EQ(shards_[0].routing.asked, (std::vector<std::string>{a1, a2}));
  EXPECT_EQ(Deferred(0, 11), (std::vector<uint32_t>{0, 2, 3}));
  EXPECT_TRUE(shards_[1].routing.asked.empty());
  EXPECT_TRUE(shards_[1].spool.deferred().empty());
  Turn(1);
  EXPECT_EQ(shards_[1].routing.asked, (std::vector<std::string>{b1, b2}));
  EXPECT_EQ(Deferred(1, 11), (std::vector<uint32_t>{1, 4, 5}));
  EXPECT_EQ(Deferred(0, 11), (std::vector<uint32_t>{0, 2, 3}));  // nothing more for shard 0

  // Fresh mail: first attempt. One job per domain: its recipients share one retry time.
  for (ShardId s = 0; s < kShards; ++s) {
    for (const auto& d : shards_[s].spool.deferred())
      EXPECT_EQ(d.attempts, 1) << "recipient " << d.index;
  }
  EXPECT_GT(NextAttempt(0, 11, 0), clock_.WallMs());
  EXPECT_EQ(NextAttempt(0, 11, 0), NextAttempt(0, 11, 3));
  EXPECT_EQ(NextAttempt(1, 11, 1), NextAttempt(1, 11, 5));
  EXPECT_EQ(shards_[0].stats.ForDomain(a1).queued.Get(), 2);
  EXPECT_EQ(shards_[1].stats.ForDomain(b2).queued.Get(), 1);
}

// Past eight domains a message's recipients are grouped by hash, not by comparing: the same
// result. 30 recipients over 15 domains, every domain twice, far apart in the list.
TEST_F(DispatcherTest, AMessageToManyDomainsIsSplitTheSameWay) {
  std::vector<std::string> domains;
  for (int i = 0; i < 15; ++i)
    domains.push_back("many" + std::to_string(i) + ".test");
  queue::NewMessage m;
  m.mail_from = "sender@origin.test";
  for (int round = 0; round < 2; ++round) {
    for (const std::string& d : domains)
      m.rcpt_to.push_back("u" + std::to_string(m.rcpt_to.size()) + "@" + d);
  }
  m.rcpt_to[20] = "U20@MANY5.TEST";  // the 2nd recipient of many5.test, in upper case
  m.body = "Subject: hi\r\n\r\nhi\r\n";
  dispatcher_.DispatchAccepted(44, std::move(m));
  Turn(0);
  Turn(1);
  for (ShardId s = 0; s < kShards; ++s) {
    std::vector<std::string> asked_want;
    std::vector<uint32_t> want;
    for (size_t i = 0; i < domains.size(); ++i) {
      if (OwnerOf(domains[i], kShards) != s)
        continue;
      asked_want.push_back(domains[i]);  // once each, in first-seen order
      want.push_back(static_cast<uint32_t>(i));
      want.push_back(static_cast<uint32_t>(i + domains.size()));
      EXPECT_EQ(shards_[s].stats.ForDomain(domains[i]).queued.Get(), 2) << domains[i];
      // One job per domain: its two recipients share one retry time.
      EXPECT_EQ(NextAttempt(s, 44, static_cast<uint32_t>(i)),
                NextAttempt(s, 44, static_cast<uint32_t>(i + domains.size())))
          << domains[i];
    }
    std::sort(want.begin(), want.end());
    EXPECT_EQ(shards_[s].routing.asked, asked_want) << "shard " << s;
    EXPECT_EQ(Deferred(s, 44), want) << "shard " << s;
  }
  EXPECT_EQ(Deferred(0, 44).size() + Deferred(1, 44).size(), 30u);
}

// A recovered recipient whose sender had its delay notice keeps that: deferred again, the spool
// is told so again (and no second notice goes out, delivery_engine_test.cc).
TEST_F(DispatcherTest, ARecoveredRecipientKeepsThatItsDelayNoticeWentOut) {
  const std::string d = domains_[0][0];
  const ShardId owner = OwnerOf(d, kShards);
  queue::RecoveredMessage m;
  m.id = 35;
  m.mail_from = "sender@origin.test";
  m.recipients = {{0, "a@" + d, {}, 4, 0, true}, {1, "b@" + d, {}, 1, 0, false}};
  dispatcher_.DispatchRecovered(std::move(m));
  Turn(0);
  Turn(1);
  ASSERT_NE(DeferralOf(owner, 35, 0), nullptr);
  ASSERT_NE(DeferralOf(owner, 35, 1), nullptr);
  EXPECT_TRUE(DeferralOf(owner, 35, 0)->delay_warned);
  EXPECT_EQ(DeferralOf(owner, 35, 0)->attempts, 5);
  EXPECT_FALSE(DeferralOf(owner, 35, 1)->delay_warned);
}

// RFC 5321 §4.5.1: "<postmaster>" has no domain. The server stores it as [server] postmaster;
// one found without a domain (a spool from before that rule) goes there too, never to a
// destination named "".
TEST_F(DispatcherTest, ARecipientWithoutADomainGoesToThePostmaster) {
  const ShardId pm_shard = OwnerOf("pm.test", kShards);
  queue::RecoveredMessage m;
  m.id = 33;
  m.mail_from = "sender@origin.test";
  m.recipients = {{0, "Postmaster", {}, 0, 0}, {1, "u@" + domains_[0][0], {}, 0, 0}};
  dispatcher_.DispatchRecovered(std::move(m));
  queue::NewMessage n;
  n.rcpt_to = {"postmaster"};
  n.body = "Subject: hi\r\n\r\nhi\r\n";
  dispatcher_.DispatchAccepted(34, std::move(n));
  Turn(0);
  Turn(1);
  for (ShardId s = 0; s < kShards; ++s) {
    for (const std::string& d : shards_[s].routing.asked)
      EXPECT_FALSE(d.empty()) << "a destination without a domain, shard " << s;
  }
  const std::vector<std::string>& asked = shards_[pm_shard].routing.asked;
  EXPECT_EQ(std::count(asked.begin(), asked.end(), "pm.test"), 2) << "one job per message";
  const std::vector<uint32_t> deferred33 = Deferred(pm_shard, 33);
  EXPECT_TRUE(!deferred33.empty() && deferred33.front() == 0u);
  EXPECT_EQ(Deferred(pm_shard, 34), std::vector<uint32_t>{0});
  EXPECT_EQ(shards_[pm_shard].stats.ForDomain("pm.test").queued.Get(), 2);
}

TEST_F(DispatcherTest, RecoveredRecipientsKeepTheirSpoolIndexAttemptsAndRetryTime) {
  const std::string& a1 = domains_[0][0];
  const std::string& a2 = domains_[0][1];
  const std::string& b1 = domains_[1][0];
  const int64_t now = clock_.WallMs();
  queue::RecoveredMessage m;
  m.id = 22;
  m.mail_from = "sender@origin.test";
  m.body_size = 1000;
  // Indices 0-2, 4-6 and 10-11 were delivered before the restart.
  m.recipients = {
      {3, "x@" + a1, {}, 2, 0},           {7, "y@" + b1, {}, 0, now + 30000},
      {8, "z@" + a1, {}, 5, now + 10000}, {9, "w@" + b1, {}, 1, 0},
      {12, "v@" + a2, {}, 4, 0},
  };
  dispatcher_.DispatchRecovered(std::move(m));
  Turn(0);
  Turn(1);

  // a2's job was due: tried (no route) at once, its attempts going on from 4.
  ASSERT_EQ(Deferred(0, 22), std::vector<uint32_t>{12});
  EXPECT_EQ(Attempts(0, 22, 12), 5);
  // The others wait for their last recipient's retry time.
  EXPECT_EQ(shards_[0].delivery->scheduled(), 2u);  // a1's, and a2's again
  EXPECT_EQ(shards_[1].delivery->scheduled(), 1u);
  EXPECT_TRUE(shards_[1].spool.deferred().empty());
  EXPECT_EQ(shards_[0].routing.asked, std::vector<std::string>{a2});

  Advance(std::chrono::milliseconds(10000 + Scheduler::kGranularityMs));
  EXPECT_EQ(Deferred(0, 22), (std::vector<uint32_t>{3, 8, 12}));
  EXPECT_EQ(Attempts(0, 22, 3), 3);
  EXPECT_EQ(Attempts(0, 22, 8), 6);
  EXPECT_TRUE(shards_[1].spool.deferred().empty());  // 9 was due, but its job waits for 7

  Advance(20s);
  EXPECT_EQ(Deferred(1, 22), (std::vector<uint32_t>{7, 9}));
  EXPECT_EQ(Attempts(1, 22, 7), 1);
  EXPECT_EQ(Attempts(1, 22, 9), 2);
  EXPECT_TRUE(shards_[0].spool.reads().empty());  // no route: no body was needed
  EXPECT_TRUE(shards_[1].spool.reads().empty());
}

TEST_F(DispatcherTest, EveryJobSharesOneBodyAndOneEnvelope) {
  // 300 recipients in each of three domains on two shards, 100-byte local parts: an envelope
  // of about 100 KB; a body of 1 MiB.
  queue::NewMessage m;
  m.mail_from = "sender@origin.test";
  const std::string local(100, 'l');
  const std::string domains[] = {domains_[0][0], domains_[1][0], domains_[0][1]};
  for (int i = 0; i < 300; ++i) {
    for (const std::string& d : domains)
      m.rcpt_to.push_back(local + std::to_string(i) + "@" + d);
  }
  size_t address_bytes = 0;
  for (const std::string& r : m.rcpt_to)
    address_bytes += r.size();
  m.body.assign(1 << 20, 'b');
  const size_t body_size = m.body.size();

  AllocationCount count(/*large=*/address_bytes / 2);
  dispatcher_.DispatchAccepted(33, std::move(m));
  Turn(0);
  Turn(1);
  count.Stop();

  ASSERT_EQ(shards_[0].routing.asked.size() + shards_[1].routing.asked.size(), 3u);
  ASSERT_EQ(shards_[0].spool.deferred().size() + shards_[1].spool.deferred().size(), 900u);
  EXPECT_LT(count.bytes(), body_size) << "a job copied the body";
  EXPECT_EQ(count.large(), 1u) << "one buffer for every address, shared by every job";
  EXPECT_GE(count.bytes(), address_bytes);
}

// ---------------------------------------------------------------------------------------------
// RecipientList

std::vector<Recipient> Recipients(uint32_t n, uint32_t first = 0) {
  std::vector<Recipient> v;
  for (uint32_t i = 0; i < n; ++i)
    v.push_back({first + i, static_cast<uint16_t>((first + i) % 7)});
  return v;
}

// The list's contents as (pos, attempts) pairs.
std::vector<std::pair<uint32_t, uint16_t>> Contents(const RecipientList& l) {
  std::vector<std::pair<uint32_t, uint16_t>> out;
  for (const Recipient& r : l)
    out.emplace_back(r.pos, r.attempts);
  return out;
}
std::vector<std::pair<uint32_t, uint16_t>> Contents(const std::vector<Recipient>& v) {
  std::vector<std::pair<uint32_t, uint16_t>> out;
  for (const Recipient& r : v)
    out.emplace_back(r.pos, r.attempts);
  return out;
}

TEST(RecipientListTest, PushBackKeepsEveryRecipientInOrder) {
  RecipientList l;
  EXPECT_TRUE(l.empty());
  const auto want = Recipients(100);
  for (const Recipient& r : want)
    l.push_back(r);
  EXPECT_EQ(l.size(), 100u);
  EXPECT_FALSE(l.empty());
  EXPECT_EQ(Contents(l), Contents(want));
  EXPECT_EQ(l.front().pos, 0u);
  EXPECT_EQ(l[57].pos, 57u);
  l[57].attempts = 1000;
  EXPECT_EQ(l[57].attempts, 1000);
}

TEST(RecipientListTest, OneRecipientNeedsNoHeapAndTheSecondOneBlock) {
  RecipientList l;
  AllocationCount count;
  l.push_back({4, 1});
  EXPECT_EQ(count.allocations(), 0u);
  l.push_back({5, 2});
  EXPECT_EQ(count.allocations(), 1u);
  count.Stop();
  EXPECT_EQ(Contents(l), (std::vector<std::pair<uint32_t, uint16_t>>{{4, 1}, {5, 2}}));
}

TEST(RecipientListTest, AssignReplacesTheContentsWhateverTheSizes) {
  RecipientList l;
  const auto five = Recipients(5, 10);
  l.assign(five.data(), five.data() + five.size());
  EXPECT_EQ(Contents(l), Contents(five));
  const auto three = Recipients(3, 20);
  l.assign(three.data(), three.data() + three.size());  // smaller: in place
  EXPECT_EQ(Contents(l), Contents(three));
  const auto nine = Recipients(9, 30);
  l.assign(nine.data(), nine.data() + nine.size());  // larger: grows
  EXPECT_EQ(Contents(l), Contents(nine));
  const auto one = Recipients(1, 40);
  l.assign(one.data(), one.data() + one.size());
  EXPECT_EQ(Contents(l), Contents(one));
  l.assign(one.data(), one.data());
  EXPECT_TRUE(l.empty());
  l = Recipients(4, 50);  // from a vector
  EXPECT_EQ(Contents(l), Contents(Recipients(4, 50)));
  // From the tail of another list, as a job is split.
  RecipientList part;
  part.assign(l.end() - 2, l.end());
  EXPECT_EQ(Contents(part), Contents(Recipients(2, 52)));
}

TEST(RecipientListTest, ResizeOnlyShrinksAndPushBackGoesOnAfterIt) {
  RecipientList l;
  l = Recipients(6);
  l.resize(2);
  EXPECT_EQ(Contents(l), Contents(Recipients(2)));
  l.resize(10);
  EXPECT_EQ(l.size(), 2u);
  l.push_back({77, 3});
  EXPECT_EQ(l.size(), 3u);
  EXPECT_EQ(l[2].pos, 77u);
  l.resize(0);
  EXPECT_TRUE(l.empty());
  for (const Recipient& r : Recipients(12, 100))
    l.push_back(r);
  EXPECT_EQ(Contents(l), Contents(Recipients(12, 100)));
}

TEST(RecipientListTest, CopiesAreDeepAndIndependent) {
  for (uint32_t n : {1u, 2u, 9u}) {
    RecipientList a;
    a = Recipients(n);
    RecipientList b(a);
    EXPECT_EQ(Contents(b), Contents(a)) << n;
    b[0].attempts = 999;
    EXPECT_NE(a[0].attempts, 999) << n;
    RecipientList c;
    c = Recipients(5, 60);
    c = a;
    EXPECT_EQ(Contents(c), Contents(a)) << n;
    c = static_cast<const RecipientList&>(c);  // self-assignment keeps it
    EXPECT_EQ(Contents(c), Contents(a)) << n;
  }
}

TEST(RecipientListTest, MovesTakeTheRecipientsAndLeaveAnEmptyUsableList) {
  for (uint32_t n : {1u, 2u, 9u}) {
    RecipientList a;
    a = Recipients(n);
    RecipientList b(std::move(a));
    EXPECT_EQ(Contents(b), Contents(Recipients(n))) << n;
    EXPECT_TRUE(a.empty()) << n;  // NOLINT: a moved-from list is empty, by contract
    a.push_back({5, 5});
    EXPECT_EQ(Contents(a), (std::vector<std::pair<uint32_t, uint16_t>>{{5, 5}})) << n;

    RecipientList c;
    c = Recipients(7, 70);
    c = std::move(b);
    EXPECT_EQ(Contents(c), Contents(Recipients(n))) << n;
    EXPECT_TRUE(b.empty()) << n;  // NOLINT
    RecipientList& alias = c;
    c = std::move(alias);  // self-move keeps it
    EXPECT_EQ(Contents(c), Contents(Recipients(n))) << n;
  }
}

// ---------------------------------------------------------------------------------------------
// Message

TEST(MessageTest, IndicesDefaultToThePositions) {
  Message m;
  m.Reserve(3, 30);
  m.AddRecipient("a@x.test", 0);
  m.AddRecipient("bb@y.test", 1);
  m.AddRecipient("ccc@z.test", 2);
  ASSERT_EQ(m.recipients(), 3u);
  EXPECT_EQ(m.address(0), "a@x.test");
  EXPECT_EQ(m.address(1), "bb@y.test");
  EXPECT_EQ(m.address(2), "ccc@z.test");
  for (uint32_t p = 0; p < 3; ++p)
    EXPECT_EQ(m.spool_index(p), p);
}

TEST(MessageTest, NonContiguousSpoolIndicesAreKept) {
  // A recovered message whose recipients 0, 1, 3 and 4 were delivered before the restart.
  Message m;
  m.AddRecipient("c@x.test", 2);
  m.AddRecipient("f@y.test", 5);
  m.AddRecipient("g@x.test", 6);
  ASSERT_EQ(m.recipients(), 3u);
  EXPECT_EQ(m.spool_index(0), 2u);
  EXPECT_EQ(m.spool_index(1), 5u);
  EXPECT_EQ(m.spool_index(2), 6u);
  EXPECT_EQ(m.address(0), "c@x.test");
  EXPECT_EQ(m.address(1), "f@y.test");
  EXPECT_EQ(m.address(2), "g@x.test");
}

TEST(MessageTest, IndicesThatStopBeingContiguousMidwayKeepTheEarlierOnes) {
  Message m;
  m.AddRecipient("a@x.test", 0);
  m.AddRecipient("b@x.test", 1);
  m.AddRecipient("e@x.test", 4);
  m.AddRecipient("f@x.test", 5);
  m.AddRecipient("", 9);  // the null address is an address too
  ASSERT_EQ(m.recipients(), 5u);
  const uint32_t want[] = {0, 1, 4, 5, 9};
  for (uint32_t p = 0; p < 5; ++p)
    EXPECT_EQ(m.spool_index(p), want[p]) << p;
  EXPECT_EQ(m.address(2), "e@x.test");
  EXPECT_EQ(m.address(4), "");
}

// Counts the blocks of the shared_ptrs made with it (a body and its control block are one).
template <typename T>
struct CountingAllocator {
  using value_type = T;
  static inline int live = 0;
  CountingAllocator() = default;
  template <typename U>
  CountingAllocator(const CountingAllocator<U>&) {}
  T* allocate(size_t n) {
    ++CountingAllocator<char>::live;
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, size_t n) {
    --CountingAllocator<char>::live;
    std::allocator<T>().deallocate(p, n);
  }
  template <typename U>
  bool operator==(const CountingAllocator<U>&) const {
    return true;
  }
};

Body CountedBody(const char* text) {
  return std::allocate_shared<const std::string>(CountingAllocator<std::string>(), text);
}

// LoadedBody: the body one job holds, for the message's other jobs; never what keeps it alive.
TEST(MessageTest, LoadedBodyIsSharedWhileAJobHoldsItAndForgottenByTheLastOne) {
  int& blocks = CountingAllocator<char>::live;
  auto message = std::make_shared<Message>();
  EXPECT_EQ(message->loaded_body.Get(), nullptr);
  Job a;
  a.message = message;
  a.body = message->loaded_body.Offer(CountedBody("first read"));
  // A second read that ends later takes the first one's buffer; its own goes at once.
  Job b;
  b.message = message;
  b.body = message->loaded_body.Offer(CountedBody("second read"));
  EXPECT_EQ(b.body, a.body);
  EXPECT_EQ(*b.body, "first read");
  EXPECT_EQ(blocks, 1);
  EXPECT_EQ(message->loaded_body.Get(), a.body);

  // A copy of the message starts with none.
  const Message copy(*message);
  EXPECT_EQ(copy.loaded_body.Get(), nullptr);

  a.DropBody();  // b still holds it
  EXPECT_EQ(a.body, nullptr);
  EXPECT_EQ(*message->loaded_body.Get(), "first read");
  b.DropBody();  // the last holder: the body goes, and the message forgets it
  EXPECT_EQ(message->loaded_body.Get(), nullptr);
  EXPECT_EQ(blocks, 0) << "the message's weak reference still pins the body's block";
  // The next read is kept afresh.
  Job c;
  c.message = message;
  c.body = message->loaded_body.Offer(CountedBody("read again"));
  EXPECT_EQ(*message->loaded_body.Get(), "read again");
}

TEST(MessageTest, DomainOfIsTheLowerCasedPartAfterTheLastAt) {
  EXPECT_EQ(DomainOf("User@Example.TEST"), "example.test");
  EXPECT_EQ(DomainOf("\"a@b\"@Host.Test"), "host.test");
  EXPECT_EQ(DomainOf("postmaster"), "");
  EXPECT_EQ(DomainOf(""), "");
}

}  // namespace
}  // namespace spate::delivery
