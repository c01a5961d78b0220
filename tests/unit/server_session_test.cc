// tests/unit/server_session_test.cc: the SMTP server state machine, driven as the reactor would.
//
// Every conversation is fed whole, byte by byte and in random splits, and must give the same
// replies and the same messages each time. After each Feed() the harness takes any finished
// message and commits it to a fake spool, which answers with ids "Q1", "Q2", ... (or fails).
#include "core/smtp/server_session.h"

#include <algorithm>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "core/smtp/reply.h"

namespace spate::smtp {

// Readable failures (found by argument-dependent lookup, so outside the unnamed namespace).
void PrintTo(const ReceivedMessage& m, std::ostream* os) {
  *os << "{helo=" << testing::PrintToString(m.helo)
      << " from=" << testing::PrintToString(m.mail_from)
      << " to=" << testing::PrintToString(m.rcpt_to) << " body=" << testing::PrintToString(m.body)
      << " 8bit=" << m.body_8bit << "}";
}

namespace {

using namespace std::string_literals;

constexpr size_t kMaxSize = 10000;

ServerSession::Options TestOptions() {
  ServerSession::Options o;
  o.hostname = "mx.test";
  o.max_message_size = kMaxSize;
  return o;
}

const std::string kGreeting = "220 mx.test ESMTP spate\r\n";
const std::string kMailOk = "250 2.1.0 Ok\r\n";
const std::string kRcptOk = "250 2.1.5 Ok\r\n";
const std::string kGoAhead = "354 End data with <CR><LF>.<CR><LF>\r\n";
const std::string kOk = "250 2.0.0 Ok\r\n";
const std::string kBye = "221 2.0.0 Bye\r\n";
const std::string kNeedMail = "503 5.5.1 Error: need MAIL command\r\n";
const std::string kUnknown = "500 5.5.1 Error: command not recognized\r\n";
const std::string kLineTooLong = "500 5.5.2 Error: line too long\r\n";
const std::string kTooBig = "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n";
const std::string kCommitFailed = "451 4.3.0 Error: queue file write error\r\n";

std::string EhloReply(size_t size = kMaxSize) {
  return "250-mx.test\r\n250-PIPELINING\r\n250-SIZE " + std::to_string(size) +
         "\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
}
std::string Queued(int n) {
  return "250 2.0.0 Ok: queued as Q" + std::to_string(n) + "\r\n";
}
std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

ReceivedMessage Msg(std::string helo, std::string from, std::vector<std::string> to,
                    std::string body, bool eight_bit = false) {
  return ReceivedMessage{std::move(helo), std::move(from), std::move(to), std::move(body),
                         eight_bit};
}

struct Case {
  std::string name;
  std::string input;
  std::string output;  // every reply, greeting included
  std::vector<ReceivedMessage> messages;
  bool closed = false;
  ServerSession::Options options = TestOptions();
  std::vector<int> failing_commits = {};  // 1-based: which commits the fake spool fails
};

struct Outcome {
  std::string output;
  std::vector<ReceivedMessage> messages;
  bool closed = false;
};

Outcome Converse(const Case& c, const std::vector<std::string_view>& chunks) {
  ServerSession session(c.options);
  Outcome outcome;
  int commits = 0;
  auto pump = [&] {
    while (std::optional<ReceivedMessage> m = session.TakeMessage()) {
      EXPECT_TRUE(session.awaiting_commit());
      outcome.messages.push_back(std::move(*m));
      ++commits;
      const bool fail = std::count(c.failing_commits.begin(), c.failing_commits.end(), commits);
      if (fail) {
        session.OnCommitted(Unexpected{std::make_error_code(std::errc::io_error)});
      } else {
        session.OnCommitted("Q" + std::to_string(commits));
      }
    }
    EXPECT_FALSE(session.awaiting_commit());
    outcome.output += session.TakeOutput();
  };
  session.Start();
  pump();
  for (std::string_view chunk : chunks) {
    session.Feed(chunk);
    pump();
  }
  outcome.closed = session.closed();
  return outcome;
}

// Splits `s` at random places. Odd seeds cut it into chunks of 1..8 octets, even seeds into a
// few long pieces.
std::vector<std::string_view> RandomSplit(std::string_view s, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::string_view> chunks;
  if (seed % 2 == 1) {
    std::uniform_int_distribution<size_t> len(1, 8);
    for (size_t pos = 0; pos < s.size();) {
      const size_t n = std::min(len(rng), s.size() - pos);
      chunks.push_back(s.substr(pos, n));
      pos += n;
    }
    return chunks;
  }
  std::uniform_int_distribution<size_t> cut(0, s.size());
  std::vector<size_t> cuts = {0, s.size()};
  for (int i = 0; i < 6; ++i) {
    cuts.push_back(cut(rng));
  }
  std::sort(cuts.begin(), cuts.end());
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    chunks.push_back(s.substr(cuts[i], cuts[i + 1] - cuts[i]));  // empty chunks are fed too
  }
  return chunks;
}

void ExpectOutcome(const Case& c, const Outcome& got, const std::string& how) {
  EXPECT_EQ(got.output, c.output) << how;
  EXPECT_EQ(got.messages, c.messages) << how;
  EXPECT_EQ(got.closed, c.closed) << how;
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ConversationTest : public testing::TestWithParam<Case> {};

TEST_P(ConversationTest, SameResultForEverySplit) {
  const Case& c = GetParam();
  const std::string_view in = c.input;
  ExpectOutcome(c, Converse(c, {in}), "fed whole");
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < in.size(); ++i) {
    bytes.push_back(in.substr(i, 1));
  }
  ExpectOutcome(c, Converse(c, bytes), "fed byte by byte");
  for (unsigned seed = 1; seed <= 40; ++seed) {
    ExpectOutcome(c, Converse(c, RandomSplit(in, seed)),
                  "random split, seed " + std::to_string(seed));
    if (HasFailure()) {
      return;  // one seed's report is enough
    }
  }
}

// Building blocks of conversations.
const std::string kEhlo = "EHLO client.test\r\n";
const std::string kMail = "MAIL FROM:<a@x.test>\r\n";
const std::string kRcpt = "RCPT TO:<b@y.test>\r\n";
const std::string kData = "DATA\r\n";
const std::string kQuit = "QUIT\r\n";
const std::string kEhloThenTxn = kEhlo + kMail + kRcpt + kData;
const std::string kEhloThenTxnReplies = kGreeting + EhloReply() + kMailOk + kRcptOk + kGoAhead;

ReceivedMessage SimpleMsg(std::string body) {
  return Msg("client.test", "a@x.test", {"b@y.test"}, std::move(body));
}

std::vector<Case> BasicCases() {
  std::vector<Case> cases;
  cases.push_back(
      {"helo_transaction",
       "HELO client.test\r\n" + kMail + kRcpt + kData + "Subject: x\r\n\r\nhi\r\n.\r\n" + kQuit,
       kGreeting + "250 mx.test\r\n" + kMailOk + kRcptOk + kGoAhead + Queued(1) + kBye,
       {SimpleMsg("Subject: x\r\n\r\nhi\r\n")},
       true});
  cases.push_back(
      {"pipelined_in_one_packet",
       "EHLO client.test\r\nMAIL FROM:<a@x.test> BODY=8BITMIME SIZE=30\r\n"
       "RCPT TO:<b@y.test>\r\nRCPT TO:<c@z.test>\r\nDATA\r\n"
       "Subject: \xe2\x82\xac\r\n\r\nbody\r\n.\r\nQUIT\r\n",
       kGreeting + EhloReply() + kMailOk + kRcptOk + kRcptOk + kGoAhead + Queued(1) + kBye,
       {Msg("client.test", "a@x.test", {"b@y.test", "c@z.test"},
            "Subject: \xe2\x82\xac\r\n\r\nbody\r\n", true)},
       true});
  // The second MAIL follows the first "." in the same packet; it is answered only after the
  // first message is committed (HoldsInputUntilCommitted checks the pause itself).
  cases.push_back(
      {"two_messages_back_to_back",
       kEhloThenTxn + "one\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<c@z.test>\r\n" + kData +
           "two\r\n.\r\n" + kQuit,
       kEhloThenTxnReplies + Queued(1) + kMailOk + kRcptOk + kGoAhead + Queued(2) + kBye,
       {SimpleMsg("one\r\n"), Msg("client.test", "", {"c@z.test"}, "two\r\n")},
       true});
  cases.push_back({"dot_unstuffing",
                   kEhloThenTxn + "..leading\r\n...\r\n.x\r\nmid.dle.\r\n..\r\n. \r\n.\r\n",
                   kEhloThenTxnReplies + Queued(1),
                   {SimpleMsg(".leading\r\n..\r\nx\r\nmid.dle.\r\n.\r\n \r\n")}});
  cases.push_back({"empty_body",
                   kEhloThenTxn + ".\r\n" + kQuit,
                   kEhloThenTxnReplies + Queued(1) + kBye,
                   {SimpleMsg("")},
                   true});
  cases.push_back({"lone_crlf_body",
                   kEhloThenTxn + "\r\n.\r\n",
                   kEhloThenTxnReplies + Queued(1),
                   {SimpleMsg("\r\n")}});
  cases.push_back({"commit_failure_then_retry",
                   kEhloThenTxn + "one\r\n.\r\n" + kMail + kRcpt + kData + "one\r\n.\r\n",
                   kEhloThenTxnReplies + kCommitFailed + kMailOk + kRcptOk + kGoAhead + Queued(2),
                   {SimpleMsg("one\r\n"), SimpleMsg("one\r\n")},
                   false,
                   TestOptions(),
                   {1}});
  return cases;
}

// SMTP smuggling (CVE-2023-51766 and friends): an end of data made of a bare LF or a bare CR must
// not end the data, so the commands after it stay message text and exactly one message results.
std::vector<Case> SmugglingCases() {
  const std::string smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n" + kData +
                               "From: spoofed\r\n\r\nevil\r\n";
  struct Variant {
    std::string name;
    std::string fake_end;       // what follows "hi"
    std::string body_fake_end;  // how it is stored in the body
  };
  const std::vector<Variant> variants = {
      {"lf_dot_lf", "\n.\n", "\n.\n"},
      {"lf_dot_crlf", "\n.\r\n", "\n.\r\n"},
      {"cr_dot_cr", "\r.\r", "\r.\r"},
      {"crlf_dot_lf", "\r\n.\n", "\r\n\n"},  // a leading dot before more text is unstuffed
      {"cr_dot_crlf", "\r.\r\n", "\r.\r\n"},
      {"crlf_nul_dot_crlf", "\r\n\0.\r\n"s, "\r\n\0.\r\n"s},
      {"crlf_dot_cr", "\r\n.\r", "\r\n\r"},
      {"crlf_dot_cr_cr_lf", "\r\n.\r\r\n", "\r\n\r\r\n"},
      {"crlf_dot_space_crlf", "\r\n. \r\n", "\r\n \r\n"},
  };
  std::vector<Case> cases;
  cases.reserve(variants.size() + 2);
  for (const Variant& v : variants) {
    cases.push_back({"smuggling_" + v.name,
                     kEhloThenTxn + "hi" + v.fake_end + smuggled + ".\r\n" + kQuit,
                     kEhloThenTxnReplies + Queued(1) + kBye,
                     {SimpleMsg("hi" + v.body_fake_end + smuggled)},
                     true});
  }
  // The same tricks right at the start of the data, where a line starts without a CRLF.
  cases.push_back({"smuggling_dot_lf_first",
                   kEhloThenTxn + ".\n" + smuggled + ".\r\n" + kQuit,
                   kEhloThenTxnReplies + Queued(1) + kBye,
                   {SimpleMsg("\n" + smuggled)},
                   true});
  cases.push_back({"smuggling_dot_cr_first",
                   kEhloThenTxn + ".\r" + smuggled + ".\r\n" + kQuit,
                   kEhloThenTxnReplies + Queued(1) + kBye,
                   {SimpleMsg("\r" + smuggled)},
                   true});
  return cases;
}

std::vector<Case> LimitCases() {
  std::vector<Case> cases;
  const std::string line100 = std::string(98, 'x') + "\r\n";
  // SIZE at MAIL (RFC 1870 §6.1): refused, no transaction; then a fitting one goes through.
  cases.push_back({"size_refused_at_mail",
                   kEhlo + "MAIL FROM:<a@x.test> SIZE=10001\r\n" + kRcpt +
                       "MAIL FROM:<a@x.test> SIZE=10000\r\n" + kRcpt + kData + "hi\r\n.\r\n",
                   kGreeting + EhloReply() +
                       "552 5.3.4 Message size exceeds fixed maximum message size\r\n" + kNeedMail +
                       kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("hi\r\n")}});
  // Too big during the data (RFC 1870 §6.3), though SIZE said less: 552 after the ".", the
  // transaction is gone (RCPT gets 503); exactly the limit is accepted.
  cases.push_back({"size_refused_after_data",
                   kEhlo + "MAIL FROM:<a@x.test> SIZE=100\r\n" + kRcpt + kData +
                       Repeat(line100, 101) + ".\r\n" + kRcpt + kMail + kRcpt + kData +
                       Repeat(line100, 100) + ".\r\n" + kQuit,
                   kGreeting + EhloReply() + kMailOk + kRcptOk + kGoAhead + kTooBig + kNeedMail +
                       kMailOk + kRcptOk + kGoAhead + Queued(1) + kBye,
                   {SimpleMsg(Repeat(line100, 100))},
                   true});
  // An over-size body that also holds a fake "." line after a bare LF: still one refusal.
  cases.push_back({"size_refused_with_smuggling_inside",
                   kEhloThenTxn + Repeat(line100, 101) + "\n.\n" + kQuit + ".\r\n" + kQuit,
                   kEhloThenTxnReplies + kTooBig + kBye,
                   {},
                   true});
  cases.push_back({"no_size_limit",
                   kEhlo + "MAIL FROM:<a@x.test> SIZE=99999999\r\n" + kRcpt + kData +
                       Repeat(line100, 200) + ".\r\n",
                   kGreeting + EhloReply(0) + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg(Repeat(line100, 200))},
                   false,
                   [] {
                     ServerSession::Options o = TestOptions();
                     o.max_message_size = 0;
                     return o;
                   }()});
  // Text lines (RFC 5321 §4.5.3.1.6): 1000 octets with CRLF pass, a stuffing dot is not counted,
  // bare LFs end a line for counting; 1001 octets refuse the message with 554 5.6.0.
  const std::string line1000 = std::string(998, 'y') + "\r\n";
  cases.push_back({"text_line_limit",
                   kEhloThenTxn + line1000 + "." + line1000 + Repeat("short\n", 300) + "\r\n" +
                       ".\r\n" + kMail + kRcpt + kData + "ok\r\n" + std::string(999, 'z') +
                       "\r\nmore\r\n.\r\n" + kRcpt + "RSET\r\n" + kQuit,
                   kEhloThenTxnReplies + Queued(1) + kMailOk + kRcptOk + kGoAhead +
                       "554 5.6.0 Error: message has a text line longer than 1000 octets "
                       "(RFC 5321 4.5.3.1.6)\r\n" +
                       kNeedMail + kOk + kBye,
                   {SimpleMsg(line1000 + line1000 + Repeat("short\n", 300) + "\r\n")},
                   true});
  // Command lines (RFC 5321 §4.5.3.1.4): 512 octets with CRLF pass, 513 do not; a long line is
  // skipped up to its LF however long it is, and the session goes on.
  cases.push_back({"command_line_limit",
                   "NOOP " + std::string(505, 'x') + "\r\n" + "NOOP " + std::string(506, 'x') +
                       "\r\n" + "NOOP " + std::string(506, 'x') + "\n" + "MAIL FROM:<" +
                       std::string(5000, 'a') + "@x.test>\r\n" + std::string(513, '\r') + "\n" +
                       kEhloThenTxn + ".\r\n" + kQuit,
                   kGreeting + kOk + kLineTooLong + kOk + kLineTooLong + kLineTooLong +
                       EhloReply() + kMailOk + kRcptOk + kGoAhead + Queued(1) + kBye,
                   {SimpleMsg("")},
                   true});
  // Recipients (RFC 5321 §4.5.3.1.8, §4.5.3.1.10): the 101st gets 452, the 100 stay.
  {
    std::string input = kEhlo + kMail;
    std::vector<std::string> rcpts;
    for (int i = 0; i < 101; ++i) {
      input += "RCPT TO:<r" + std::to_string(i) + "@y.test>\r\n";
      if (i < 100) {
        rcpts.push_back("r" + std::to_string(i) + "@y.test");
      }
    }
    input += kData + "hi\r\n.\r\n";
    cases.push_back({"too_many_recipients",
                     input,
                     kGreeting + EhloReply() + kMailOk + Repeat(kRcptOk, 100) +
                         "452 4.5.3 Error: too many recipients\r\n" + kGoAhead + Queued(1),
                     {Msg("client.test", "a@x.test", rcpts, "hi\r\n")}});
  }
  return cases;
}

std::vector<Case> CommandCases() {
  std::vector<Case> cases;
  cases.push_back({"bad_sequences",
                   kMail + kRcpt + kData + kEhlo + kRcpt + kData + kMail + kMail + kData + kRcpt +
                       kData + "x\r\n.\r\n",
                   kGreeting + "503 5.5.1 Error: send HELO/EHLO first\r\n" + kNeedMail + kNeedMail +
                       EhloReply() + kNeedMail + kNeedMail + kMailOk +
                       "503 5.5.1 Error: nested MAIL command\r\n" +
                       "554 5.5.1 Error: no valid recipients\r\n" + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("x\r\n")}});
  cases.push_back(
      {"unknown_commands",
       "FOO\r\n\r\nMAILFROM:<a@x.test>\r\nSTARTTLS\r\nBDAT 10 LAST\r\n NOOP\r\nNOOP\r\n",
       kGreeting + Repeat(kUnknown, 6) + kOk,
       {}});
  cases.push_back({"quit_stops_processing",
                   kEhlo + kQuit + "NOOP\r\n" + kMail + "garbage",
                   kGreeting + EhloReply() + kBye,
                   {},
                   true});
  cases.push_back({"too_many_errors",
                   "FOO\r\nBAR\r\nNOOP\r\nMAIL\r\nNOOP\r\n",
                   kGreeting + kUnknown + kUnknown + kOk +
                       "503 5.5.1 Error: send HELO/EHLO first\r\n" +
                       "421 4.7.0 mx.test Error: too many errors\r\n",
                   {},
                   true,
                   [] {
                     ServerSession::Options o = TestOptions();
                     o.max_errors = 3;
                     return o;
                   }()});
  // A stored message forgives earlier errors.
  cases.push_back({"errors_reset_by_a_stored_message",
                   "FOO\r\nFOO\r\n" + kEhloThenTxn + ".\r\nFOO\r\nFOO\r\nNOOP\r\nFOO\r\n",
                   kGreeting + kUnknown + kUnknown + EhloReply() + kMailOk + kRcptOk + kGoAhead +
                       Queued(1) + kUnknown + kUnknown + kOk + kUnknown +
                       "421 4.7.0 mx.test Error: too many errors\r\n",
                   {SimpleMsg("")},
                   true,
                   [] {
                     ServerSession::Options o = TestOptions();
                     o.max_errors = 3;
                     return o;
                   }()});
  cases.push_back(
      {"mail_syntax",
       kEhlo + "mail from:<a@x.test>\r\nrset\r\n" + "MAIL FROM: <a@x.test>\r\nRSET\r\n" +
           "MAIL FROM:<>\r\nRSET\r\n" + "MAIL FROM:a@x.test\r\n" + "MAIL FROM:<a@x.test\r\n" +
           "MAIL TO:<a@x.test>\r\n" + "MAIL\r\n" + "MAIL FROM:<a@x.test> FOO=1\r\n" +
           "MAIL FROM:<a@x.test> SIZE=abc\r\n" + "MAIL FROM:<a@x.test> SIZE\r\n" +
           "MAIL FROM:<a@x.test> SIZE=1 SIZE=2\r\n" + "MAIL FROM:<a@x.test> BODY=BINARYMIME\r\n" +
           "MAIL FROM:<a@x.test>SIZE=1\r\n" + "MAIL FROM:<a@x.test> SIZE=\r\n" +
           "MAIL FROM:<j\xc3\xb6rg@x.test>\r\n" +
           "MAIL FROM:<a@x.test> SIZE=123456789012345678901\r\n" +
           "MAIL FROM:<a@x.test> SIZE=99999999999999999999\r\n" +
           "MAIL FROM:<@r.test:a@x.test>  size=100   body=8bitmime  \r\n" + kRcpt + kData +
           "\xff\r\n.\r\n",
       kGreeting + EhloReply() + kMailOk + kOk + kMailOk + kOk + kMailOk + kOk +
           "501 5.1.7 Bad sender address syntax\r\n" + "501 5.1.7 Bad sender address syntax\r\n" +
           "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" +
           "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" +
           "555 5.5.4 Unsupported MAIL parameter\r\n" + "501 5.5.4 Bad SIZE parameter\r\n" +
           "501 5.5.4 Bad SIZE parameter\r\n" + "501 5.5.4 Bad SIZE parameter\r\n" +
           "501 5.5.4 Bad BODY parameter\r\n" + "501 5.5.4 Bad MAIL parameter syntax\r\n" +
           "501 5.5.4 Bad MAIL parameter syntax\r\n" +
           "550 5.6.7 Non-ASCII addresses not permitted for that sender\r\n" +
           "501 5.5.4 Bad SIZE parameter\r\n" +
           "552 5.3.4 Message size exceeds fixed maximum message size\r\n" + kMailOk + kRcptOk +
           kGoAhead + Queued(1),
       {Msg("client.test", "a@x.test", {"b@y.test"}, "\xff\r\n", true)}});
  cases.push_back(
      {"rcpt_syntax",
       kEhlo + kMail + "RCPT TO:<>\r\n" + "RCPT TO:b@y.test\r\n" + "RCPT FROM:<b@y.test>\r\n" +
           "rcpt to: <B@Y.test>\r\n" + "RCPT TO:<Postmaster>\r\n" +
           "RCPT TO:<@r.test,@s.test:c@z.test>\r\n" + "RCPT TO:<d@z.test> NOTIFY=NEVER\r\n" +
           "RCPT TO:<d@z.test> =x\r\n" + "RCPT TO:<\xc3\xa9@z.test>\r\n" +
           "RCPT TO:<\"q u\"@[192.0.2.1]>\r\n" + kData + ".\r\n",
       kGreeting + EhloReply() + kMailOk + "501 5.1.3 Bad recipient address syntax\r\n" +
           "501 5.1.3 Bad recipient address syntax\r\n" +
           "501 5.5.4 Syntax: RCPT TO:<address>\r\n" + kRcptOk + kRcptOk + kRcptOk +
           "555 5.5.4 Unsupported RCPT parameter\r\n" + "501 5.5.4 Bad RCPT parameter syntax\r\n" +
           "553 5.6.7 Non-ASCII addresses not permitted for that recipient\r\n" + kRcptOk +
           kGoAhead + Queued(1),
       {Msg("client.test", "a@x.test",
            {"B@Y.test", "Postmaster", "c@z.test", "\"q u\"@[192.0.2.1]"}, "")}});
  cases.push_back(
      {"other_commands",
       "NOOP\r\nnoop some text\r\nVRFY someone\r\nVRFY\r\nHELP\r\nhelp mail\r\nRSET x\r\n"
       "RSET\r\nEHLO\r\nHELO\r\n" +
           kEhlo + kMail + "EHLO again.test\r\n" + kRcpt + kMail + kRcpt + "RSET\r\n" + kData +
           kMail + kRcpt + "DATA now\r\n" + kData + ".\r\n" + "Quit\r\n",
       kGreeting + kOk + kOk +
           "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n" +
           "501 5.5.4 Syntax: VRFY address\r\n" +
           Repeat("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n", 2) +
           "501 5.5.4 Syntax: RSET\r\n" + kOk + "501 5.5.4 Syntax: EHLO hostname\r\n" +
           "501 5.5.4 Syntax: HELO hostname\r\n" + EhloReply() + kMailOk + EhloReply() + kNeedMail +
           kMailOk + kRcptOk + kOk + kNeedMail + kMailOk + kRcptOk + "501 5.5.4 Syntax: DATA\r\n" +
           kGoAhead + Queued(1) + kBye,
       {Msg("again.test", "a@x.test", {"b@y.test"}, "")},
       true});
  // Commands may end in a bare LF (lenient, as Postfix); the data phase only knows CRLF.
  cases.push_back({"bare_lf_commands",
                   "EHLO client.test\nMAIL FROM:<a@x.test>\nRCPT TO:<b@y.test>\nDATA\n"
                   "line1\n.\nstill body\r\n.\r\nQUIT\n",
                   kEhloThenTxnReplies + Queued(1) + kBye,
                   {SimpleMsg("line1\n.\nstill body\r\n")},
                   true});
  return cases;
}

std::vector<Case> AllCases() {
  std::vector<Case> all;
  for (auto* make : {&BasicCases, &SmugglingCases, &LimitCases, &CommandCases}) {
    for (Case& c : make()) {
      all.push_back(std::move(c));
    }
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(All, ConversationTest, testing::ValuesIn(AllCases()),
                         [](const testing::TestParamInfo<Case>& p) { return p.param.name; });

// The pause itself: nothing after the first "." is answered before the spool says the message
// is durable, and input fed meanwhile waits.
TEST(ServerSessionTest, HoldsInputUntilCommitted) {
  ServerSession session(TestOptions());
  session.Start();
  session.Feed(kEhloThenTxn + "one\r\n.\r\n" + kMail + kRcpt + kData + "two\r\n.\r\nNO");
  EXPECT_EQ(session.TakeOutput(), kEhloThenTxnReplies);
  EXPECT_TRUE(session.awaiting_commit());
  std::optional<ReceivedMessage> first = session.TakeMessage();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->body, "one\r\n");
  EXPECT_FALSE(session.TakeMessage().has_value());  // handed out once

  session.Feed("OP\r\n");
  EXPECT_EQ(session.TakeOutput(), "");
  EXPECT_TRUE(session.awaiting_commit());

  session.OnCommitted(std::string("A1"));
  EXPECT_EQ(session.TakeOutput(), "250 2.0.0 Ok: queued as A1\r\n" + kMailOk + kRcptOk + kGoAhead);
  EXPECT_TRUE(session.awaiting_commit());
  std::optional<ReceivedMessage> second = session.TakeMessage();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->body, "two\r\n");

  session.OnCommitted(std::string("A2"));
  EXPECT_EQ(session.TakeOutput(), "250 2.0.0 Ok: queued as A2\r\n" + kOk);
  EXPECT_FALSE(session.awaiting_commit());
  EXPECT_FALSE(session.closed());
  session.Feed(kQuit);
  EXPECT_EQ(session.TakeOutput(), kBye);
  EXPECT_TRUE(session.closed());
}

TEST(ServerSessionTest, TimeoutSays421AndCloses) {
  ServerSession session(TestOptions());
  session.Start();
  session.Feed(kEhlo + "NOOP");
  session.OnTimeout();
  EXPECT_EQ(session.TakeOutput(),
            kGreeting + EhloReply() + "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  EXPECT_TRUE(session.closed());
  session.Feed("\r\nNOOP\r\n");
  session.OnTimeout();
  EXPECT_EQ(session.TakeOutput(), "");
}

TEST(ServerSessionTest, TimeoutWhileAwaitingCommit) {
  ServerSession session(TestOptions());
  session.Start();
  session.Feed(kEhloThenTxn + ".\r\nNOOP\r\n");
  ASSERT_TRUE(session.TakeMessage().has_value());
  session.OnTimeout();
  EXPECT_TRUE(session.closed());
  session.OnCommitted(std::string("late"));
  EXPECT_FALSE(session.awaiting_commit());
  EXPECT_EQ(session.TakeOutput(),
            kEhloThenTxnReplies + "421 4.4.2 mx.test Error: timeout exceeded\r\n");
}

// Bodies are copied a line at a time straight from the fed buffers; a big one goes through in
// ordinary reactor-sized reads, and an over-size one is refused without being kept.
TEST(ServerSessionTest, LargeBodies) {
  ServerSession::Options options = TestOptions();
  options.max_message_size = 16 << 20;
  std::string body;
  for (int i = 0; body.size() < (8 << 20); ++i) {
    body += (i % 7 == 0 ? "." : "") + std::string(70, static_cast<char>('a' + i % 26)) + "\r\n";
  }
  std::string stuffed;
  for (size_t pos = 0; pos < body.size();) {
    const size_t end = body.find("\r\n", pos) + 2;
    stuffed += (body[pos] == '.' ? "." : "") + body.substr(pos, end - pos);
    pos = end;
  }
  auto feed = [](ServerSession& s, std::string_view in) {
    for (size_t pos = 0; pos < in.size(); pos += 65536) {
      s.Feed(in.substr(pos, 65536));
    }
  };
  ServerSession session(options);
  session.Start();
  feed(session, kEhloThenTxn + stuffed + ".\r\n");
  std::optional<ReceivedMessage> m = session.TakeMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->body == body);  // not EXPECT_EQ: no 8 MiB diff on failure
  session.OnCommitted(std::string("BIG"));

  options.max_message_size = 1 << 20;
  ServerSession small(options);
  small.Start();
  feed(small, kEhloThenTxn + stuffed + ".\r\n" + kQuit);
  EXPECT_FALSE(small.TakeMessage().has_value());
  EXPECT_EQ(small.TakeOutput(),
            kGreeting + EhloReply(1 << 20) + kMailOk + kRcptOk + kGoAhead + kTooBig + kBye);
}

TEST(ReplyTest, ToStringUsesTheFirstLine) {
  EXPECT_EQ((Reply{250, "2.0.0", "Ok"}).ToString(), "250 2.0.0 Ok");
  EXPECT_EQ((Reply{550, "", "No such user\nreally"}).ToString(), "550 No such user");
  EXPECT_EQ((Reply{421, "4.4.2", ""}).ToString(), "421 4.4.2");
  EXPECT_EQ((Reply{220, "", "mx ESMTP"}).ToString(), "220 mx ESMTP");
}

}  // namespace
}  // namespace spate::smtp
