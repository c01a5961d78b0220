// The submission glue's hand-over to the spool keeps every field the spool must keep, and its
// per-client connection count and AUTH failure count hold across shards.
#include "core/server/submission.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace spate::server {
namespace {

TEST(ToSpoolMessageTest, KeepsEnvelopeBodyAndDsnParameters) {
  smtp::ReceivedMessage r;
  r.mail_from = "sender@campaign.test";
  r.rcpt_to = {"a@x.test", "b@y.test"};
  r.body = "Subject: hi\r\n\r\nbody\r\n";
  r.body_8bit = true;
  r.smtputf8 = true;
  r.ret = smtp::ReceivedMessage::Ret::kHdrs;
  r.envid = "campaign-42";
  r.auth_user = "mailer";
  r.dsn = {{smtp::kNotifySuccess | smtp::kNotifyFailure, "rfc822;a@x.test"}, {}};
  queue::NewMessage m = ToSpoolMessage(std::move(r));
  EXPECT_EQ(m.mail_from, "sender@campaign.test");
  EXPECT_EQ(m.rcpt_to, (std::vector<std::string>{"a@x.test", "b@y.test"}));
  EXPECT_EQ(m.body, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_TRUE(m.body_8bit);
  EXPECT_TRUE(m.smtputf8);
  EXPECT_EQ(m.ret, 2);
  EXPECT_EQ(m.envid, "campaign-42");
  EXPECT_EQ(m.auth_user, "mailer");
  ASSERT_EQ(m.dsn.size(), 2u);
  EXPECT_EQ(m.dsn[0].notify, smtp::kNotifySuccess | smtp::kNotifyFailure);
  EXPECT_EQ(m.dsn[0].orcpt, "rfc822;a@x.test");
  EXPECT_EQ(m.dsn[1].notify, 0);
  EXPECT_EQ(m.dsn[1].orcpt, "");
}

TEST(ToSpoolMessageTest, NoDsnParametersStoresNone) {
  smtp::ReceivedMessage r;
  r.rcpt_to = {"a@x.test"};
  r.dsn = {{}};
  r.ret = smtp::ReceivedMessage::Ret::kFull;
  queue::NewMessage m = ToSpoolMessage(std::move(r));
  EXPECT_TRUE(m.dsn.empty());
  EXPECT_EQ(m.ret, 1);
  EXPECT_EQ(m.mail_from, "");  // the null sender stays null
}

// [server] max_connections_per_client: one table for all shards, so the count is exact
// whichever shard the kernel hands a connection to.
TEST(ClientConnectionsTest, CountsPerClientUpToTheLimit) {
  ClientConnections clients(2);
  EXPECT_TRUE(clients.TryAdd("192.0.2.1"));
  EXPECT_TRUE(clients.TryAdd("192.0.2.1"));
  EXPECT_FALSE(clients.TryAdd("192.0.2.1"));  // the third
  EXPECT_TRUE(clients.TryAdd("192.0.2.2"));   // another client has its own count
  clients.Remove("192.0.2.1");
  EXPECT_TRUE(clients.TryAdd("192.0.2.1"));  // a slot came free
  EXPECT_FALSE(clients.TryAdd("192.0.2.1"));
  clients.Remove("192.0.2.1");
  clients.Remove("192.0.2.1");
  clients.Remove("192.0.2.2");
  EXPECT_TRUE(clients.TryAdd("192.0.2.1"));  // all gone: counting starts again
  EXPECT_TRUE(clients.TryAdd("192.0.2.1"));
  EXPECT_FALSE(clients.TryAdd("192.0.2.1"));
}

TEST(ClientConnectionsTest, ZeroMeansNoLimit) {
  ClientConnections clients(0);
  for (int i = 0; i < 1000; ++i)
    EXPECT_TRUE(clients.TryAdd("2001:db8::/64"));
}

// Shards accept on their own threads: the count stays exact when they race.
TEST(ClientConnectionsTest, ExactAcrossThreads) {
  constexpr unsigned kLimit = 100;
  ClientConnections clients(kLimit);
  std::atomic<unsigned> admitted{0};
  std::vector<std::thread> shards;
  for (int t = 0; t < 4; ++t) {
    shards.emplace_back([&] {
      for (unsigned i = 0; i < kLimit; ++i) {
        if (clients.TryAdd("192.0.2.9"))
          admitted.fetch_add(1);
      }
    });
  }
  for (std::thread& t : shards)
    t.join();
  EXPECT_EQ(admitted.load(), kLimit);
}

// [auth] max_failures: one table for all shards, with the failure window and a size cap.
using AuthClock = AuthFailures::Clock;

TEST(AuthFailuresTest, BlocksAtMaxFailuresUntilTheWindowPasses) {
  AuthFailures failures(3, std::chrono::seconds(600));
  AuthClock::time_point t0{};
  EXPECT_FALSE(failures.Blocked("192.0.2.1", t0));
  EXPECT_FALSE(failures.RecordFailure("192.0.2.1", t0));
  EXPECT_FALSE(failures.RecordFailure("192.0.2.1", t0 + std::chrono::seconds(1)));
  EXPECT_FALSE(failures.Blocked("192.0.2.1", t0 + std::chrono::seconds(2)));
  EXPECT_TRUE(failures.RecordFailure("192.0.2.1", t0 + std::chrono::seconds(2)));  // the third
  EXPECT_TRUE(failures.Blocked("192.0.2.1", t0 + std::chrono::seconds(3)));
  EXPECT_FALSE(failures.Blocked("192.0.2.2", t0 + std::chrono::seconds(3))) << "per client";
  // The window runs from the last failure.
  EXPECT_TRUE(failures.Blocked("192.0.2.1", t0 + std::chrono::seconds(601)));
  EXPECT_FALSE(failures.Blocked("192.0.2.1", t0 + std::chrono::seconds(602)));
  EXPECT_EQ(failures.size(), 0u) << "an expired entry is forgotten";
  EXPECT_FALSE(failures.RecordFailure("192.0.2.1", t0 + std::chrono::seconds(603)))
      << "counting starts again";
}

TEST(AuthFailuresTest, OldFailuresAgeOut) {
  AuthFailures failures(2, std::chrono::seconds(10));
  AuthClock::time_point t0{};
  EXPECT_FALSE(failures.RecordFailure("2001:db8::/64", t0));
  EXPECT_FALSE(failures.RecordFailure("2001:db8::/64", t0 + std::chrono::seconds(11)));
  EXPECT_TRUE(failures.RecordFailure("2001:db8::/64", t0 + std::chrono::seconds(12)));
}

TEST(AuthFailuresTest, SizeIsCapped) {
  AuthFailures failures(2, std::chrono::seconds(10), /*max_entries=*/4);
  AuthClock::time_point t0{};
  for (int i = 0; i < 100; ++i)
    failures.RecordFailure("192.0.2." + std::to_string(i), t0);
  EXPECT_EQ(failures.size(), 4u) << "full, never over";
}

// When the table is full, expired entries make room first: every one of them goes, and no
// client whose failures still count loses them.
TEST(AuthFailuresTest, ExpiredEntriesMakeRoomFirst) {
  AuthFailures failures(2, std::chrono::seconds(10), /*max_entries=*/4);
  AuthClock::time_point t0{};
  failures.RecordFailure("192.0.2.1", t0);  // expire at t0 + 10 s
  failures.RecordFailure("192.0.2.2", t0);
  EXPECT_FALSE(failures.RecordFailure("198.51.100.1", t0 + std::chrono::seconds(5)));
  EXPECT_TRUE(failures.RecordFailure("198.51.100.1", t0 + std::chrono::seconds(8)));   // blocked
  EXPECT_FALSE(failures.RecordFailure("198.51.100.2", t0 + std::chrono::seconds(8)));  // one
  ASSERT_EQ(failures.size(), 4u);

  // Full, and the first two have expired: a new client takes the room they leave.
  auto t1 = t0 + std::chrono::seconds(12);
  EXPECT_FALSE(failures.RecordFailure("203.0.113.1", t1));
  EXPECT_EQ(failures.size(), 3u) << "both expired entries went, not one arbitrary entry";
  EXPECT_TRUE(failures.Blocked("198.51.100.1", t1)) << "a blocked client stays blocked";
  EXPECT_TRUE(failures.RecordFailure("198.51.100.2", t1)) << "its earlier failure still counts";

  // Full of live entries: the cap still holds.
  EXPECT_FALSE(failures.RecordFailure("203.0.113.2", t1));
  EXPECT_EQ(failures.size(), 4u);
  EXPECT_FALSE(failures.RecordFailure("203.0.113.3", t1));
  EXPECT_EQ(failures.size(), 4u);
}

// Shards record failures on their own threads: the client is locked out at exactly
// max_failures in total, however they race. One failure short is not enough; the next one is.
TEST(AuthFailuresTest, ExactAcrossThreads) {
  constexpr unsigned kThreads = 4;
  constexpr unsigned kEach = 25;
  constexpr unsigned kMax = kThreads * kEach + 1;
  AuthFailures failures(kMax, std::chrono::seconds(600));
  AuthClock::time_point now{};
  std::atomic<unsigned> reached{0};
  std::vector<std::thread> shards;
  for (unsigned t = 0; t < kThreads; ++t) {
    shards.emplace_back([&] {
      for (unsigned i = 0; i < kEach; ++i) {
        if (failures.RecordFailure("192.0.2.9", now))
          reached.fetch_add(1);
      }
    });
  }
  for (std::thread& t : shards)
    t.join();
  EXPECT_EQ(reached.load(), 0u) << "counted more failures than were made";
  EXPECT_FALSE(failures.Blocked("192.0.2.9", now));
  EXPECT_TRUE(failures.RecordFailure("192.0.2.9", now)) << "lost a failure in the race";
  EXPECT_TRUE(failures.Blocked("192.0.2.9", now));
}

}  // namespace
}  // namespace spate::server
