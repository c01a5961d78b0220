// tests/unit/records_test.cc
//
// The spool's record codecs (queue/records.h): every record round-trips, and no truncated or
// garbled record decodes (envelopes, recipient records, keys, suppression entries).
#include "queue/records.h"

#include <gtest/gtest.h>

namespace spate::queue::records {
namespace {

NewMessage Sample() {
  NewMessage m;
  m.mail_from = "alice@example.org";
  m.rcpt_to = {"bob@a.example", "carol@b.example", "dave@a.example"};
  m.body = std::string(1234, 'x');
  m.body_8bit = true;
  m.smtputf8 = false;
  m.ret = 2;
  m.envid = "campaign-7";
  m.auth_user = "sender";
  m.campaign = "spring-sale";
  m.dsn = {{4, "rfc822;bob@a.example"}, {0, ""}, {2 | 8, ""}};
  return m;
}

TEST(RecordsTest, EnvelopeRoundTrips) {
  NewMessage m = Sample();
  std::string value = EncodeEnvelope(m, 1700000000123);
  RecoveredMessage out;
  std::vector<PendingRecipient> all;
  ASSERT_TRUE(DecodeEnvelope(value, &out, &all));
  EXPECT_EQ(out.mail_from, m.mail_from);
  EXPECT_EQ(out.received_ms, 1700000000123);
  EXPECT_EQ(out.body_size, 1234u);
  EXPECT_TRUE(out.body_8bit);
  EXPECT_FALSE(out.smtputf8);
  EXPECT_EQ(out.ret, 2);
  EXPECT_EQ(out.envid, "campaign-7");
  EXPECT_EQ(out.auth_user, "sender");
  ASSERT_EQ(all.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(all[i].index, i);
    EXPECT_EQ(all[i].address, m.rcpt_to[i]);
    EXPECT_EQ(all[i].dsn.notify, m.dsn[i].notify);
    EXPECT_EQ(all[i].dsn.orcpt, m.dsn[i].orcpt);
    EXPECT_EQ(all[i].attempts, 0);
  }
}

TEST(RecordsTest, EnvelopeWithoutDsnAndWithNullSender) {
  NewMessage m;
  m.rcpt_to = {"x@y.example"};
  m.smtputf8 = true;
  RecoveredMessage out;
  std::vector<PendingRecipient> all;
  ASSERT_TRUE(DecodeEnvelope(EncodeEnvelope(m, 5), &out, &all));
  EXPECT_EQ(out.mail_from, "");
  EXPECT_TRUE(out.smtputf8);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].dsn.notify, 0);
  EXPECT_EQ(all[0].dsn.orcpt, "");
}

TEST(RecordsTest, NoTruncatedOrExtendedEnvelopeDecodes) {
  std::string value = EncodeEnvelope(Sample(), 1);
  RecoveredMessage out;
  std::vector<PendingRecipient> all;
  for (size_t n = 0; n < value.size(); ++n)
    EXPECT_FALSE(DecodeEnvelope(std::string_view(value).substr(0, n), &out, &all)) << n;
  EXPECT_FALSE(DecodeEnvelope(value + "z", &out, &all));
  std::string bad_version = value;
  bad_version[0] = 9;
  EXPECT_FALSE(DecodeEnvelope(bad_version, &out, &all));
  // A recipient count far beyond what the record holds is refused before any allocation.
  NewMessage one;
  one.rcpt_to = {"a@b"};
  std::string huge = EncodeEnvelope(one, 1);
  size_t count_at = huge.size() - (4 + 3 + 1 + 4) - 4;
  huge[count_at] = '\x7f';
  EXPECT_FALSE(DecodeEnvelope(huge, &out, &all));
}

// The campaign came with envelope version 2; a message without one is written as version 1,
// which a build from before campaigns reads too; a version 2 without a campaign is no record
// we write (one encoding per record).
TEST(RecordsTest, EnvelopeKeepsItsCampaignAndOneWithoutIsVersionOne) {
  const std::string v2 = EncodeEnvelope(Sample(), 9);
  EXPECT_EQ(v2[0], 2);
  RecoveredMessage out;
  std::vector<PendingRecipient> all;
  ASSERT_TRUE(DecodeEnvelope(v2, &out, &all));
  EXPECT_EQ(out.campaign, "spring-sale");
  NewMessage m = Sample();
  m.campaign.clear();
  std::string v1 = EncodeEnvelope(m, 9);
  EXPECT_EQ(v1[0], 1);
  EXPECT_EQ(v1.size() + 4 + 11, v2.size());
  ASSERT_TRUE(DecodeEnvelope(v1, &out, &all));
  EXPECT_EQ(out.campaign, "") << "a used struct does not keep the last campaign";
  EXPECT_EQ(out.auth_user, "sender");
  EXPECT_EQ(all.size(), 3u);
  // Version 2 with an empty campaign: damage.
  const size_t at = v1.find("sender") + 6;
  std::string bad = v1;
  bad.insert(at, std::string(4, '\0'));
  bad[0] = 2;
  EXPECT_FALSE(DecodeEnvelope(bad, &out, &all));
}

// The priority (RFC 6710 MT-PRIORITY) came with version 3, written only for a priority other
// than 0: a message without one keeps version 1 or 2 (so a build from before priorities still
// reads it), and a v1 or v2 record reads as priority 0.
TEST(RecordsTest, EnvelopeKeepsItsPriorityInVersionThreeOnly) {
  RecoveredMessage out;
  std::vector<PendingRecipient> all;
  for (int8_t p : {int8_t{-9}, int8_t{-1}, int8_t{1}, int8_t{9}}) {
    for (const std::string campaign : {"spring-sale", ""}) {
      NewMessage m = Sample();
      m.priority = p;
      m.campaign = campaign;
      const std::string v3 = EncodeEnvelope(m, 9);
      EXPECT_EQ(v3[0], 3) << int{p};
      ASSERT_TRUE(DecodeEnvelope(v3, &out, &all)) << int{p};
      EXPECT_EQ(out.priority, p);
      EXPECT_EQ(out.campaign, campaign);
      EXPECT_EQ(out.auth_user, "sender");
      EXPECT_EQ(all.size(), 3u);
      m.priority = 0;
      EXPECT_EQ(EncodeEnvelope(m, 9).size() + (campaign.empty() ? 5 : 1), v3.size())
          << "priority(1), and an empty campaign's length(4) only in version 3";
    }
  }
  NewMessage m = Sample();
  const std::string v2 = EncodeEnvelope(m, 9);
  ASSERT_EQ(v2[0], 2);
  m.priority = 4;
  ASSERT_TRUE(DecodeEnvelope(EncodeEnvelope(m, 9), &out, &all));
  ASSERT_TRUE(DecodeEnvelope(v2, &out, &all));
  EXPECT_EQ(out.priority, 0) << "version 2 has none; a used struct does not keep the last one";
  m.campaign.clear();
  m.priority = 0;
  const std::string v1 = EncodeEnvelope(m, 9);
  ASSERT_EQ(v1[0], 1);
  out.priority = 5;
  ASSERT_TRUE(DecodeEnvelope(v1, &out, &all));
  EXPECT_EQ(out.priority, 0);
  // Out of range is stored as its bound: a record the decoder refuses would stop the start.
  m.priority = 100;
  ASSERT_TRUE(DecodeEnvelope(EncodeEnvelope(m, 9), &out, &all));
  EXPECT_EQ(out.priority, 9);
  m.priority = -128;
  ASSERT_TRUE(DecodeEnvelope(EncodeEnvelope(m, 9), &out, &all));
  EXPECT_EQ(out.priority, -9);
  // Version 3 with priority 0 (one encoding per record) or beyond -9..9: damage.
  m.priority = 1;
  const std::string v3 = EncodeEnvelope(m, 9);
  const size_t at = v3.find("sender") + 6 + 4;  // past auth_user and the empty campaign
  ASSERT_EQ(v3[at], 1);
  for (char bad : {'\0', '\x0a', '\xf6', '\x7f'}) {
    std::string damaged = v3;
    damaged[at] = bad;
    EXPECT_FALSE(DecodeEnvelope(damaged, &out, &all)) << int{bad};
  }
  for (size_t n = 0; n < v3.size(); ++n)
    EXPECT_FALSE(DecodeEnvelope(std::string_view(v3).substr(0, n), &out, &all)) << n;
}

TEST(RecordsTest, RecipientRecordsRoundTrip) {
  RcptRecord deferred{RcptRecord::Kind::kDeferred, 7, 1700000000999};
  EXPECT_EQ(DecodeRcpt(EncodeRcpt(deferred)), deferred);
  RcptRecord warned{RcptRecord::Kind::kDeferred, 8, 1700000000999, true};
  EXPECT_EQ(DecodeRcpt(EncodeRcpt(warned)), warned) << "the delay notice went out: kept";
  EXPECT_EQ(EncodeRcpt(warned)[0], 'W');
  RcptRecord done{RcptRecord::Kind::kDone};
  EXPECT_EQ(DecodeRcpt(EncodeRcpt(done))->kind, RcptRecord::Kind::kDone);
  std::string v = EncodeRcpt(deferred);
  for (size_t n = 0; n < v.size(); ++n)
    EXPECT_FALSE(DecodeRcpt(std::string_view(v).substr(0, n))) << n;
  EXPECT_FALSE(DecodeRcpt("Q"));
  EXPECT_FALSE(DecodeRcpt("Dx"));
}

TEST(RecordsTest, KeysSortByIdThenIndex) {
  EXPECT_LT(MessageKey(1), MessageKey(2));
  EXPECT_LT(MessageKey(255), MessageKey(256));
  EXPECT_LT(RcptKey(5, 300), RcptKey(6, 0));
  EXPECT_LT(RcptKey(5, 1), RcptKey(5, 256));
  EXPECT_EQ(DecodeMessageKey(MessageKey(0x0102030405060708)), 0x0102030405060708u);
  auto k = DecodeRcptKey(RcptKey(42, 9));
  ASSERT_TRUE(k);
  EXPECT_EQ(k->id, 42u);
  EXPECT_EQ(k->index, 9u);
  EXPECT_FALSE(DecodeRcptKey(MessageKey(42)));
  EXPECT_FALSE(DecodeMessageKey(RcptKey(42, 9)));
  // The recipient records of a message start with its message key (prefix scans).
  EXPECT_EQ(RcptKey(42, 9).substr(0, 8), MessageKey(42));
}

TEST(RecordsTest, SuppressionValuesRoundTrip) {
  SuppressionValue v{1796143353123, "InvalidRecipient", "550 5.1.1 <bob@example.com>: unknown"};
  EXPECT_EQ(DecodeSuppression(EncodeSuppression(v)), v);
  SuppressionValue empty{0, "Manual", ""};
  EXPECT_EQ(DecodeSuppression(EncodeSuppression(empty)), empty);
  SuppressionValue longest{-1, std::string(64, 'k'), std::string(512, '\0')};
  EXPECT_EQ(DecodeSuppression(EncodeSuppression(longest)), longest);
}

TEST(RecordsTest, NoTruncatedExtendedOrGarbledSuppressionValueDecodes) {
  const std::string value = EncodeSuppression({5, "BadDomain", "550 5.1.2 no such domain"});
  for (size_t n = 0; n < value.size(); ++n)
    EXPECT_FALSE(DecodeSuppression(std::string_view(value).substr(0, n))) << n;
  EXPECT_FALSE(DecodeSuppression(value + "z"));
  std::string bad_version = value;
  bad_version[0] = 2;
  EXPECT_FALSE(DecodeSuppression(bad_version));
  // A reason length far beyond the record: refused before any allocation.
  std::string huge = value;
  huge[9 + 4 + 9] = '\x7f';
  EXPECT_FALSE(DecodeSuppression(huge));
  // Bounds: a class that is no class, a reason over 512 octets.
  EXPECT_FALSE(DecodeSuppression(EncodeSuppression({5, "", "r"})));
  EXPECT_FALSE(DecodeSuppression(EncodeSuppression({5, "Bad Domain", "r"})));
  EXPECT_FALSE(DecodeSuppression(EncodeSuppression({5, std::string(65, 'k'), "r"})));
  EXPECT_FALSE(DecodeSuppression(EncodeSuppression({5, "BadDomain", std::string(513, 'r')})));
  // Garbage of every short length.
  std::string garbage;
  for (int i = 0; i < 64; ++i) {
    garbage.push_back(static_cast<char>(i * 37 + 11));
    EXPECT_FALSE(DecodeSuppression(garbage)) << i;
  }
}

}  // namespace
}  // namespace spate::queue::records
