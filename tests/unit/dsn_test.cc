// tests/unit/dsn_test.cc
//
// delivery/dsn.h: every notification is read back by two independent readers, as a user's
// tools would: Python's email package (tests/dsn/read_dsn.py: the MIME structure and the RFC
// 3464 fields) and Sisimai, Debian's bounce parser (tests/dsn/sisimai_reason.pl: the reason a
// bounce processor files it under).
#include "delivery/dsn.h"

#include <cstdio>
#include <fstream>
#include <string>

#include <unistd.h>

#include <gtest/gtest.h>

namespace spate::delivery::dsn {
namespace {

constexpr int64_t kArrival = 1796000000000;  // Mon, 30 Nov 2026 00:53:20 +0000
constexpr int64_t kNow = kArrival + 3600 * 1000;

const std::string kOriginal =
    "From: Campaign <news@shop.example>\r\n"
    "To: <user@mail.example>\r\n"
    "Subject: Our offer\r\n"
    "Message-ID: <offer.1@shop.example>\r\n"
    "\r\n"
    "Hello, this is the offer.\r\n";

Report Failed(std::string diagnostic, std::string status = "5.1.1") {
  Report r;
  r.reporting_mta = "spate.test";
  r.from = "MAILER-DAEMON@spate.test";
  r.to = "bounces@shop.example";
  r.arrival_ms = kArrival;
  r.now_ms = kNow;
  r.unique = 42;
  r.original = kOriginal;
  Recipient rc;
  rc.final_recipient = "user@mail.example";
  rc.action = Action::kFailed;
  rc.status = std::move(status);
  rc.remote_mta = "mx1.mail.example";
  rc.diagnostic = std::move(diagnostic);
  rc.last_attempt_ms = kNow;
  r.recipients.push_back(rc);
  return r;
}

// Runs `command FILE` on the notification; its standard output.
std::string Run(const std::string& command, const std::string& message) {
  char path[] = "/tmp/dsn_test.XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, message.data(), message.size()), static_cast<ssize_t>(message.size()));
  close(fd);
  std::string out;
  FILE* p = popen((command + " " + path + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while (p != nullptr && (n = fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  if (p != nullptr)
    pclose(p);
  unlink(path);
  return out;
}

std::string Read(const std::string& message) {
  return Run("/usr/bin/python3 " SPATE_DSN_DIR "/read_dsn.py", message);
}

std::string Sisimai(const std::string& message) {
  return Run("/usr/bin/perl " SPATE_DSN_DIR "/sisimai_reason.pl", message);
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(DsnTest, AFailedRecipientIsAReportBothReadersUnderstand) {
  const Notification n = Build(Failed("550 5.1.1 <user@mail.example>: user unknown"));
  EXPECT_FALSE(n.eight_bit);
  const std::string r = Read(n.message);
  EXPECT_TRUE(Has(r, "type multipart/report")) << r;
  EXPECT_TRUE(Has(r, "report-type delivery-status")) << r;
  EXPECT_TRUE(Has(r, "part 0 text/plain")) << r;
  EXPECT_TRUE(Has(r, "part 1 message/delivery-status")) << r;
  EXPECT_TRUE(Has(r, "part 2 text/rfc822-headers")) << r;
  EXPECT_TRUE(Has(r, "header To: <bounces@shop.example>")) << r;
  EXPECT_TRUE(Has(r, "header Auto-Submitted: auto-replied")) << r;
  EXPECT_TRUE(Has(r, "header Subject: Undelivered Mail Returned to Sender")) << r;
  EXPECT_TRUE(Has(r, "message Reporting-MTA: dns; spate.test")) << r;
  EXPECT_TRUE(Has(r, "message Arrival-Date: Mon, 30 Nov 2026 00:53:20 +0000")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Final-Recipient: rfc822; user@mail.example")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Action: failed")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Status: 5.1.1")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Remote-MTA: dns; mx1.mail.example")) << r;
  EXPECT_TRUE(Has(r,
                  "recipient 0 Diagnostic-Code: smtp; 550 5.1.1 <user@mail.example>: user "
                  "unknown"))
      << r;
  EXPECT_TRUE(Has(r, "recipient 0 Last-Attempt-Date: Mon, 30 Nov 2026 01:53:20 +0000")) << r;
  EXPECT_TRUE(Has(r, "defects 0")) << r;
  EXPECT_TRUE(Has(r, "bare-lf 0")) << r;
  // The original's headers are returned, not its body (RET=HDRS is the default).
  EXPECT_NE(n.message.find("Subject: Our offer\r\n"), std::string::npos);
  EXPECT_EQ(n.message.find("this is the offer"), std::string::npos);
  EXPECT_EQ(Sisimai(n.message), "userunknown 5.1.1 user@mail.example\n");
}

TEST(DsnTest, AnExpiredRecipientIsFiledAsExpired) {
  Report report = Failed("451 4.2.0 mailbox busy, try later", "4.2.0");
  report.recipients[0].expired = true;
  const Notification n = Build(report);
  const std::string r = Read(n.message);
  EXPECT_TRUE(Has(r, "recipient 0 Status: 4.4.7")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Action: failed")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Diagnostic-Code: smtp; 451 4.2.0 mailbox busy, try later")) << r;
  EXPECT_NE(n.message.find("delivery time expired"), std::string::npos);
  EXPECT_EQ(Sisimai(n.message).substr(0, 8), "expired ") << Sisimai(n.message);
}

TEST(DsnTest, EnvidOrcptAndRecipientsThatFailedTogetherAreInOneReport) {
  Report report = Failed("550 5.1.1 no such user");
  report.envid = "campaign 7+x=y";
  report.recipients[0].original_recipient = "rfc822;User@Mail.Example";
  Recipient second = report.recipients[0];
  second.final_recipient = "other@mail.example";
  second.original_recipient.clear();
  second.status = "5.2.2";
  second.diagnostic = "552 5.2.2 mailbox full";
  report.recipients.push_back(second);
  const std::string r = Read(Build(report).message);
  // RFC 3464 §2.2.1: the ENVID as xtext (space, '+' and '=' encoded).
  EXPECT_TRUE(Has(r, "message Original-Envelope-Id: campaign+207+2Bx+3Dy")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Original-Recipient: rfc822;User@Mail.Example")) << r;
  EXPECT_TRUE(Has(r, "recipient 1 Final-Recipient: rfc822; other@mail.example")) << r;
  EXPECT_TRUE(Has(r, "recipient 1 Status: 5.2.2")) << r;
  EXPECT_EQ(r.find("recipient 1 Original-Recipient"), std::string::npos) << r;
}

TEST(DsnTest, RetFullReturnsTheWholeMessageUnlessItIsTooLarge) {
  Report report = Failed("550 5.7.1 rejected by policy", "5.7.1");
  report.return_full = true;
  std::string r = Read(Build(report).message);
  EXPECT_TRUE(Has(r, "part 2 message/rfc822")) << r;
  EXPECT_TRUE(Has(r, "original-body Hello, this is the offer.")) << r;
  report.max_full_size = 64;  // the original is larger
  const Notification small = Build(report);
  r = Read(small.message);
  EXPECT_TRUE(Has(r, "part 2 text/rfc822-headers")) << r;
  EXPECT_EQ(small.message.find("this is the offer"), std::string::npos);
  EXPECT_NE(small.message.find("too large to return whole"), std::string::npos);
}

TEST(DsnTest, HostileReplyTextCannotAddHeadersPartsOrLongLines) {
  // A server's reply with line ends, a header, a boundary, control and 8-bit octets, and a
  // line far over the limit.
  const std::string hostile = "550-5.1.1 first\r\nBcc: victim@example.com\r\n\r\n--=_spate_" +
                              std::string("000000000000002a--\r\n550 5.1.1 \x01\x7f\xff") +
                              std::string(5000, 'x');
  Report report = Failed(hostile);
  report.recipients[0].remote_mta = "mx\r\nX-Injected: 1";
  report.recipients[0].status = "5.1.1\r\nX-Injected: 2";
  const Notification n = Build(report);
  const std::string r = Read(n.message);
  EXPECT_TRUE(Has(r, "defects 0")) << r;
  EXPECT_TRUE(Has(r, "bare-lf 0")) << r;
  EXPECT_EQ(r.find("header Bcc"), std::string::npos) << r;
  // What was injected stays inside the values it came in, never a field of its own.
  EXPECT_EQ(r.find("recipient 0 X-Injected"), std::string::npos) << r;
  EXPECT_EQ(r.find("header X-Injected"), std::string::npos) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Remote-MTA: dns; mx??X-Injected: 1")) << r;
  EXPECT_TRUE(Has(r, "part 2 text/rfc822-headers")) << "still three parts\n" << r;
  EXPECT_EQ(r.find("part 3"), std::string::npos) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Status: 5.0.0")) << "a malformed status is replaced\n" << r;
  const size_t longest = std::stoul(r.substr(r.find("longest-line ") + 13));
  EXPECT_LE(longest, 998u);
  for (char c : n.message) {
    const auto u = static_cast<unsigned char>(c);
    EXPECT_TRUE(u == '\r' || u == '\n' || u == '\t' || (u >= 32 && u < 127)) << int(u);
  }
}

TEST(DsnTest, TheBoundaryNeverOccursInTheReturnedMessage) {
  Report report = Failed("550 5.1.1 no");
  const std::string original =
      "Subject: --=_spate_000000000000002a and =_spate_000000000000002a_1"
      "\r\n\r\nbody\r\n";
  report.original = original;
  const Notification n = Build(report);
  EXPECT_NE(n.message.find("boundary=\"=_spate_000000000000002a_2\""), std::string::npos)
      << n.message;
  EXPECT_TRUE(Has(Read(n.message), "defects 0"));
}

TEST(DsnTest, EightBitOriginalHeadersAreMarkedAndSaidSo) {
  Report report = Failed("550 5.1.1 no");
  const std::string original = "Subject: caf\xc3\xa9\r\n\r\nbody\r\n";
  report.original = original;
  const Notification n = Build(report);
  EXPECT_TRUE(n.eight_bit);
  EXPECT_NE(n.message.find("Content-Transfer-Encoding: 8bit\r\n\r\nSubject: caf\xc3\xa9"),
            std::string::npos);
}

TEST(DsnTest, DelayAndSuccessNoticesSayWhatHappened) {
  Report report = Failed("451 4.7.1 greylisted", "4.7.1");
  report.recipients[0].action = Action::kDelayed;
  std::string r = Read(Build(report).message);
  EXPECT_TRUE(Has(r, "header Subject: Delayed Mail (still being retried)")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Action: delayed")) << r;
  report.recipients[0].action = Action::kDelivered;
  report.recipients[0].status = "2.0.0";
  report.recipients[0].diagnostic = "250 2.0.0 ok";
  r = Read(Build(report).message);
  EXPECT_TRUE(Has(r, "header Subject: Successful Mail Delivery Report")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Action: delivered")) << r;
  EXPECT_TRUE(Has(r, "recipient 0 Status: 2.0.0")) << r;
}

}  // namespace
}  // namespace spate::delivery::dsn
