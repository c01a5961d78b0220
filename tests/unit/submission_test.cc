// The submission glue's hand-over to the spool keeps every field the spool must keep.
#include "core/server/submission.h"

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

}  // namespace
}  // namespace spate::server
