// The submission glue's hand-over to the spool keeps every field the spool must keep, and its
// per-client connection count holds across shards.
#include "core/server/submission.h"

#include <atomic>
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

}  // namespace
}  // namespace spate::server
