// tests/unit/accounting_test.cc
//
// The accounting records' lines (delivery/accounting.h), read back by a real JSON parser
// (nlohmann-json): every field where a reader expects it, hostile reply text still one valid
// line of JSON, and absent fields absent.
#include "delivery/accounting.h"

#include <string>

#include <gtest/gtest.h>

#include "core/smtp/reply.h"

#include <nlohmann/json.hpp>

namespace spate::delivery {
namespace {

using Json = nlohmann::json;

TEST(AccountingTest, ABounceRecordHasEveryFieldAReaderAsksFor) {
  smtp::Reply reply{550, "5.1.1", "<bob@example.com>: Recipient address rejected: User unknown"};
  Record r;
  r.type = RecordType::kBounce;
  r.id = 0x0005f1c2a3b4c5d6;
  r.sender = "news@shop.example";
  r.recipient = "bob@example.com";
  r.domain = "example.com";
  r.site = "mx1.example.com,mx2.example.com";
  r.campaign = "spring-sale";
  r.size = 2048;
  r.attempts = 2;
  r.reply = &reply;
  r.peer_name = "mx1.example.com";
  r.peer_address = "192.0.2.1:25";
  r.tls_version = "TLSv1.3";
  r.tls_cipher = "TLS_AES_256_GCM_SHA384";
  r.bounce_class = "InvalidRecipient";
  r.queued_ms = 1764600000000;
  r.event_ms = 1764600001234;
  const std::string line = FormatRecord(r);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const Json j = Json::parse(line);
  EXPECT_EQ(j["type"], "Bounce");
  EXPECT_EQ(j["id"], "0005f1c2a3b4c5d6");
  EXPECT_EQ(j["sender"], "news@shop.example");
  EXPECT_EQ(j["recipient"], "bob@example.com");
  EXPECT_EQ(j["domain"], "example.com");
  EXPECT_EQ(j["site"], "mx1.example.com,mx2.example.com");
  EXPECT_EQ(j["campaign"], "spring-sale");
  EXPECT_EQ(j["size"], 2048);
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["reply"]["code"], 550);
  EXPECT_EQ(j["reply"]["enhanced"], "5.1.1");
  EXPECT_EQ(j["reply"]["text"], reply.text);
  EXPECT_EQ(j["peer"]["name"], "mx1.example.com");
  EXPECT_EQ(j["peer"]["address"], "192.0.2.1:25");
  EXPECT_EQ(j["tls"]["version"], "TLSv1.3");
  EXPECT_EQ(j["tls"]["cipher"], "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(j["class"], "InvalidRecipient");
  EXPECT_EQ(j["queued"], 1764600000000);
  EXPECT_EQ(j["time"], 1764600001234);
}

TEST(AccountingTest, EveryTypeHasItsName) {
  const std::pair<RecordType, const char*> names[] = {
      {RecordType::kReception, "Reception"},
      {RecordType::kDelivery, "Delivery"},
      {RecordType::kTransientFailure, "TransientFailure"},
      {RecordType::kBounce, "Bounce"},
      {RecordType::kExpiration, "Expiration"},
      {RecordType::kAdminBounce, "AdminBounce"},
      {RecordType::kSuppressed, "Suppressed"},
      {RecordType::kDsn, "DSN"}};
  for (const auto& [type, name] : names) {
    Record r;
    r.type = type;
    EXPECT_EQ(Json::parse(FormatRecord(r))["type"], name);
  }
}

// The null sender is said ("sender": ""); what is unknown is left out, not written empty.
TEST(AccountingTest, TheNullSenderIsSaidAndUnknownFieldsAreLeftOut) {
  Record r;
  r.type = RecordType::kDsn;
  r.id = 7;
  r.recipient = "news@shop.example";
  r.dsn_action = "failed";
  r.dsn_recipients = 3;
  r.dsn_id = 0x10;
  const Json j = Json::parse(FormatRecord(r));
  ASSERT_TRUE(j.contains("sender"));
  EXPECT_EQ(j["sender"], "");
  EXPECT_EQ(j["action"], "failed");
  EXPECT_EQ(j["recipients"], 3);
  EXPECT_EQ(j["dsn_id"], "0000000000000010");
  for (const char* absent : {"site", "campaign", "reply", "peer", "tls", "class", "size"})
    EXPECT_FALSE(j.contains(absent)) << absent;
}

// A remote server's text is hostile: quotes, backslashes, control characters, CR LF, and
// bytes that are no UTF-8 still give one line of valid JSON, the valid parts kept as they are.
TEST(AccountingTest, HostileReplyTextStaysOneValidLine) {
  const std::string text = std::string("say \"hi\" \\ \r\n\t\x01 caf\xc3\xa9 \xff\xfe end");
  smtp::Reply reply{554, "", text};
  Record r;
  r.type = RecordType::kBounce;
  r.reply = &reply;
  r.recipient = "a\"b@example.com";
  const std::string line = FormatRecord(r);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  const Json j = Json::parse(line);
  const std::string got = j["reply"]["text"];
  EXPECT_EQ(got.substr(0, 15), "say \"hi\" \\ \r\n\t\x01");
  EXPECT_NE(got.find("caf\xc3\xa9"), std::string::npos);
  EXPECT_NE(got.find("\xef\xbf\xbd"), std::string::npos) << "invalid bytes become U+FFFD";
  EXPECT_FALSE(j["reply"].contains("enhanced"));
  EXPECT_EQ(j["recipient"], "a\"b@example.com");
}

}  // namespace
}  // namespace spate::delivery
