// tests/unit/server_session_test.cc: the SMTP server state machine, driven as the reactor would.
//
// Every conversation is fed whole, byte by byte and in random splits, and must give the same
// replies and the same messages each time. After each Feed() the harness takes any finished
// message and commits it to a fake spool, which answers with ids "Q1", "Q2", ... (or fails), and
// takes any AUTH credentials and checks them against one fake user (alice / secret). A
// conversation may have a second part, fed (split the same way) after the harness has completed
// the TLS handshake that the first part asked for with STARTTLS.
#include "core/smtp/server_session.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/smtp/date.h"
#include "core/smtp/errc.h"
#include "core/smtp/reply.h"

namespace spate::smtp {

// Readable failures (found by argument-dependent lookup, so outside the unnamed namespace).
void PrintTo(const ReceivedMessage& m, std::ostream* os) {
  *os << "{helo=" << testing::PrintToString(m.helo)
      << " from=" << testing::PrintToString(m.mail_from)
      << " to=" << testing::PrintToString(m.rcpt_to) << " body=" << testing::PrintToString(m.body)
      << " 8bit=" << m.body_8bit << " utf8=" << m.smtputf8 << " ret=" << static_cast<int>(m.ret)
      << " envid=" << testing::PrintToString(m.envid) << " dsn=[";
  for (const DsnRecipient& d : m.dsn) {
    *os << "{" << static_cast<int>(d.notify) << " " << testing::PrintToString(d.orcpt) << "}";
  }
  *os << "] auth=" << testing::PrintToString(m.auth_user)
      << " priority=" << (m.priority ? std::to_string(*m.priority) : "none") << "}";
}

void PrintTo(const AuthRequest& a, std::ostream* os) {
  *os << "{" << a.mechanism << " authzid=" << testing::PrintToString(a.authzid)
      << " user=" << testing::PrintToString(a.user)
      << " password=" << testing::PrintToString(a.password) << "}";
}

namespace {

using namespace std::string_literals;

constexpr size_t kMaxSize = 10000;

// 2024-01-02 03:04:05 UTC, a Tuesday.
const std::chrono::system_clock::time_point kNow =
    std::chrono::sys_days{std::chrono::year{2024} / 1 / 2} + std::chrono::hours{3} +
    std::chrono::minutes{4} + std::chrono::seconds{5};
const std::string kNowText = "Tue, 02 Jan 2024 03:04:05 +0000";

const TlsInfo kTls = {"TLSv1.3", "TLS_AES_256_GCM_SHA384"};

// Options of the old tests: no added headers, a client allowed to relay.
ServerSession::Options TestOptions() {
  ServerSession::Options o;
  o.hostname = "mx.test";
  o.max_message_size = kMaxSize;
  o.add_received = false;
  o.add_missing_headers = false;
  o.client_may_relay = true;
  return o;
}

template <typename F>
ServerSession::Options With(F change) {
  ServerSession::Options o = TestOptions();
  change(o);
  return o;
}

const std::string kGreeting = "220 mx.test ESMTP spate\r\n";
const std::string kMailOk = "250 2.1.0 Ok\r\n";
const std::string kRcptOk = "250 2.1.5 Ok\r\n";
const std::string kGoAhead = "354 End data with <CR><LF>.<CR><LF>\r\n";
const std::string kOk = "250 2.0.0 Ok\r\n";
const std::string kBye = "221 2.0.0 Bye\r\n";
const std::string kNeedMail = "503 5.5.1 Error: need MAIL command\r\n";
const std::string kNeedHelo = "503 5.5.1 Error: send HELO/EHLO first\r\n";
const std::string kSendRset = "503 5.5.1 Error: transaction failed, send RSET first\r\n";
const std::string kNoRcpts = "554 5.5.1 Error: no valid recipients\r\n";
const std::string kUnknown = "500 5.5.1 Error: command not recognized\r\n";
const std::string kLineTooLong = "500 5.5.2 Error: line too long\r\n";
const std::string kTooBig = "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n";
const std::string kCommitFailed = "451 4.3.0 Error: queue file write error\r\n";
const std::string kBareRefused =
    "550 5.6.0 Error: message contains bare LF or bare CR, not allowed (RFC 5321 2.3.8)\r\n";
const std::string kNulRefused =
    "550 5.6.0 Error: message contains NUL octets, not allowed (RFC 5322 3.5)\r\n";
const std::string kTlsReady = "220 2.0.0 Ready to start TLS\r\n";
const std::string kTlsActive = "503 5.5.1 Error: TLS already active\r\n";
const std::string kSendEhlo = "503 5.5.1 Error: send EHLO first\r\n";
const std::string kInTransaction = "503 5.5.1 Error: MAIL transaction in progress\r\n";
const std::string kAuthOk = "235 2.7.0 Authentication successful\r\n";
const std::string kAuthBad = "535 5.7.8 Authentication credentials invalid\r\n";
const std::string kBadRcpt = "501 5.1.3 Bad recipient address syntax\r\n";
const std::string kBadSender = "501 5.1.7 Bad sender address syntax\r\n";
const std::string kLoginUser = "334 VXNlcm5hbWU6\r\n";
const std::string kLoginPassword = "334 UGFzc3dvcmQ6\r\n";

struct Ehlo {
  size_t size = kMaxSize;
  bool starttls = false;
  bool auth = false;
};
std::string EhloReply(Ehlo e = {}) {
  return "250-mx.test\r\n250-PIPELINING\r\n250-SIZE " + std::to_string(e.size) +
         "\r\n250-8BITMIME\r\n" + (e.starttls ? "250-STARTTLS\r\n" : "") +
         (e.auth ? "250-AUTH PLAIN LOGIN\r\n" : "") +
         "250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-MT-PRIORITY MIXER\r\n250-SMTPUTF8\r\n"
         "250 CHUNKING\r\n";
}
std::string Queued(int n) {
  return "250 2.0.0 Ok: queued as Q" + std::to_string(n) + "\r\n";
}
std::string Octets(size_t n) {
  return "250 2.0.0 " + std::to_string(n) + " octets received\r\n";
}
std::string RelayDenied(std::string_view mailbox) {
  return "550 5.7.1 <" + std::string(mailbox) + ">: Relay access denied\r\n";
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
  ReceivedMessage m;
  m.helo = std::move(helo);
  m.mail_from = std::move(from);
  m.rcpt_to = std::move(to);
  m.body = std::move(body);
  m.body_8bit = eight_bit;
  m.dsn.resize(m.rcpt_to.size());
  return m;
}

template <typename F>
ReceivedMessage Changed(ReceivedMessage m, F change) {
  change(m);
  return m;
}

struct Case {
  std::string name;
  std::string input;
  std::string output;  // every reply, greeting included
  std::vector<ReceivedMessage> messages = {};
  bool closed = false;
  ServerSession::Options options = TestOptions();
  std::vector<int> failing_commits = {};  // 1-based: which commits the fake spool fails
  // Fed after the TLS handshake, if `input` ends in a STARTTLS that was accepted.
  std::string after_tls = {};
  std::vector<AuthRequest> auths = {};  // the credentials the glue was asked to check
};

struct Outcome {
  std::string output;
  std::vector<ReceivedMessage> messages = {};
  std::vector<AuthRequest> auths;
  bool closed = false;
};

// The fake user database.
bool CheckCredentials(const AuthRequest& a) {
  return a.user == "alice" && a.password == "secret" && (a.authzid.empty() || a.authzid == "alice");
}

using Splitter = std::function<std::vector<std::string_view>(std::string_view)>;

Outcome Converse(const Case& c, const Splitter& split) {
  ServerSession session(c.options);
  session.SetNow(kNow);
  Outcome outcome;
  int commits = 0;
  auto pump = [&] {
    while (true) {
      if (std::optional<ReceivedMessage> m = session.TakeMessage()) {
        EXPECT_TRUE(session.awaiting_commit());
        outcome.messages.push_back(std::move(*m));
        ++commits;
        const bool fail = std::count(c.failing_commits.begin(), c.failing_commits.end(), commits);
        if (fail) {
          session.OnCommitted(Unexpected{std::make_error_code(std::errc::io_error)});
        } else {
          session.OnCommitted("Q" + std::to_string(commits));
        }
        continue;
      }
      if (std::optional<AuthRequest> a = session.TakeAuthRequest()) {
        EXPECT_TRUE(session.awaiting_auth());
        EXPECT_FALSE(session.TakeAuthRequest().has_value());  // once
        outcome.auths.push_back(*a);
        session.OnAuthResult(CheckCredentials(*a));
        continue;
      }
      break;
    }
    EXPECT_FALSE(session.awaiting_commit());
    EXPECT_FALSE(session.awaiting_auth());
    outcome.output += session.TakeOutput();
  };
  session.Start();
  pump();
  for (std::string_view chunk : split(c.input)) {
    session.Feed(chunk);
    pump();
  }
  if (session.tls_requested()) {
    session.OnTlsStarted(kTls);
    EXPECT_FALSE(session.tls_requested());
    pump();
    for (std::string_view chunk : split(c.after_tls)) {
      session.Feed(chunk);
      pump();
    }
  } else {
    EXPECT_EQ(c.after_tls, "") << "no STARTTLS was accepted";
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

std::vector<std::string_view> Whole(std::string_view s) {
  return {s};
}

std::vector<std::string_view> Bytes(std::string_view s) {
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < s.size(); ++i) {
    bytes.push_back(s.substr(i, 1));
  }
  return bytes;
}

void ExpectOutcome(const Case& c, const Outcome& got, const std::string& how) {
  EXPECT_EQ(got.output, c.output) << how;
  EXPECT_EQ(got.messages, c.messages) << how;
  EXPECT_EQ(got.auths, c.auths) << how;
  EXPECT_EQ(got.closed, c.closed) << how;
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class ConversationTest : public testing::TestWithParam<Case> {};

TEST_P(ConversationTest, SameResultForEverySplit) {
  const Case& c = GetParam();
  ExpectOutcome(c, Converse(c, Whole), "fed whole");
  ExpectOutcome(c, Converse(c, Bytes), "fed byte by byte");
  for (unsigned seed = 1; seed <= 40; ++seed) {
    ExpectOutcome(c, Converse(c, [seed](std::string_view s) { return RandomSplit(s, seed); }),
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
const std::string kRset = "RSET\r\n";
const std::string kEhloThenTxn = kEhlo + kMail + kRcpt + kData;
const std::string kEhloThenTxnReplies = kGreeting + EhloReply() + kMailOk + kRcptOk + kGoAhead;
// AUTH PLAIN with base64("\0alice\0secret").
const std::string kAuthAlice = "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n";
const AuthRequest kAliceRequest = {"PLAIN", "", "alice", "secret"};

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

// SMTP smuggling (CVE-2023-51766 and friends): an end of data made of a bare LF, a bare CR or a
// NUL must not end the data, so the commands after it stay message text: under either policy
// there is exactly one message (normalised, or stripped of its NULs) or one refusal, never two
// messages.
std::vector<Case> SmugglingCases() {
  const std::string smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n" + kData +
                               "From: spoofed\r\n\r\nevil\r\n";
  struct Variant {
    std::string name;
    std::string fake_end;    // what follows "hi"
    std::string normalised;  // how it is stored under kNormalise, or with NULs stripped
    bool bare;               // holds a bare CR or LF: refused under kReject
    bool nul = false;        // holds a NUL: refused under NulPolicy::kReject (the default)
  };
  const std::vector<Variant> variants = {
      {"lf_dot_lf", "\n.\n", "\r\n.\r\n", true},
      {"lf_dot_cr", "\n.\r", "\r\n.\r\n", true},
      {"cr_dot_lf", "\r.\n", "\r\n.\r\n", true},
      {"cr_dot_cr", "\r.\r", "\r\n.\r\n", true},
      {"lf_dot_crlf", "\n.\r\n", "\r\n.\r\n", true},
      {"cr_dot_crlf", "\r.\r\n", "\r\n.\r\n", true},
      {"crlf_dot_lf", "\r\n.\n", "\r\n\r\n", true},  // a leading dot before more text is unstuffed
      {"crlf_dot_cr", "\r\n.\r", "\r\n\r\n", true},
      {"crlf_dot_cr_cr_lf", "\r\n.\r\r\n", "\r\n\r\n\r\n", true},
      {"lf_lf_dot_lf", "\n\n.\n", "\r\n\r\n.\r\n", true},
      // A next hop that drops NULs would see "\r\n.\r\n" in these. Stripped, the dot that
      // followed the NUL is text (dot-stuffed again when relayed); one that led its line before
      // the NUL was stuffing, and is removed.
      {"crlf_nul_dot_crlf", "\r\n\0.\r\n"s, "\r\n.\r\n", false, true},
      {"crlf_dot_space_crlf", "\r\n. \r\n", "\r\n \r\n", false},
      {"crlf_dot_nul_crlf", "\r\n.\0\r\n"s, "\r\n\r\n", false, true},
      {"crlf_nul_nul_dot_nul_crlf", "\r\n\0\0.\0\r\n"s, "\r\n.\r\n", false, true},
  };
  const ServerSession::Options normalise = With([](auto& o) {
    o.bare_lf = BareLfPolicy::kNormalise;
    o.nul = NulPolicy::kStrip;
  });
  std::vector<Case> cases;
  for (const Variant& v : variants) {
    const std::string input = kEhloThenTxn + "hi" + v.fake_end + smuggled + ".\r\n" + kQuit;
    const bool refused = v.bare || v.nul;
    cases.push_back({"smuggling_reject_" + v.name, input,
                     kEhloThenTxnReplies +
                         (v.bare  ? kBareRefused
                          : v.nul ? kNulRefused
                                  : Queued(1)) +
                         kBye,
                     refused
                         ? std::vector<ReceivedMessage>{}
                         : std::vector<ReceivedMessage>{SimpleMsg("hi" + v.normalised + smuggled)},
                     true});
    cases.push_back({"smuggling_normalise_" + v.name,
                     input,
                     kEhloThenTxnReplies + Queued(1) + kBye,
                     {SimpleMsg("hi" + v.normalised + smuggled)},
                     true,
                     normalise});
  }
  // NUL is its own policy: bare LFs normalised does not let a NUL through, and the other way.
  cases.push_back({"nul_refused_with_bare_lf_normalised",
                   kEhloThenTxn + "a\0b\r\n.\r\n"s + kQuit,
                   kEhloThenTxnReplies + kNulRefused + kBye,
                   {},
                   true,
                   With([](auto& o) { o.bare_lf = BareLfPolicy::kNormalise; })});
  cases.push_back({"bare_lf_refused_with_nul_stripped",
                   kEhloThenTxn + "a\0b\nc\r\n.\r\n"s + kQuit,
                   kEhloThenTxnReplies + kBareRefused + kBye,
                   {},
                   true,
                   With([](auto& o) { o.nul = NulPolicy::kStrip; })});
  // In a BDAT chunk too (RFC 3030: no terminator, but the next hop may use DATA).
  cases.push_back({"nul_refused_in_bdat",
                   kEhlo + kMail + kRcpt + "BDAT 8 LAST\r\na\0.\r\nb\r\n"s + kQuit,
                   kGreeting + EhloReply() + kMailOk + kRcptOk + kNulRefused + kBye,
                   {},
                   true});
  cases.push_back({"nul_stripped_in_bdat",
                   kEhlo + kMail + kRcpt + "BDAT 8 LAST\r\na\0.\r\nb\r\n"s + kQuit,
                   kGreeting + EhloReply() + kMailOk + kRcptOk + Queued(1) + kBye,
                   {SimpleMsg("a.\r\nb\r\n")},
                   true,
                   With([](auto& o) { o.nul = NulPolicy::kStrip; })});
  // A refused message is gone, the session goes on: the next transaction works.
  cases.push_back({"nul_refused_then_next_message",
                   kEhloThenTxn + "a\0\r\n.\r\n"s + kMail + kRcpt + kData + "ok\r\n.\r\n",
                   kEhloThenTxnReplies + kNulRefused + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("ok\r\n")}});
  // The same tricks right at the start of the data, where a line starts without a CRLF.
  for (const auto& [name, start, stored] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"dot_lf_first", ".\n", "\r\n"}, {"dot_cr_first", ".\r", "\r\n"}}) {
    const std::string input = kEhloThenTxn + start + smuggled + ".\r\n" + kQuit;
    cases.push_back(
        {"smuggling_reject_" + name, input, kEhloThenTxnReplies + kBareRefused + kBye, {}, true});
    cases.push_back({"smuggling_normalise_" + name,
                     input,
                     kEhloThenTxnReplies + Queued(1) + kBye,
                     {SimpleMsg(stored + smuggled)},
                     true,
                     normalise});
  }
  // A refused message is gone, the session goes on: the next transaction works.
  cases.push_back({"bare_lf_refused_then_next_message",
                   kEhloThenTxn + "a\nb\r\n.\r\n" + kMail + kRcpt + kData + "ok\r\n.\r\n",
                   kEhloThenTxnReplies + kBareRefused + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("ok\r\n")}});
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
                   kGreeting + EhloReply({.size = 0}) + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg(Repeat(line100, 200))},
                   false,
                   With([](auto& o) { o.max_message_size = 0; })});
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
                   {SimpleMsg(line1000 + line1000 + Repeat("short\r\n", 300) + "\r\n")},
                   true,
                   With([](auto& o) { o.bare_lf = BareLfPolicy::kNormalise; })});
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
  // MAIL and RCPT lines may be longer by what their parameters add (RFC 3461 §5.4, RFC 4954 §5,
  // RFC 6710 §3): 512 + 696 for MAIL, 512 + 530 for RCPT, with CRLF.
  {
    auto line = [](std::string start, size_t size) {
      return start + std::string(size - 2 - start.size(), 'p') + "\r\n";
    };
    const std::string mail = "MAIL FROM:<a@x.test> ENVID=";
    const std::string rcpt = "RCPT TO:<b@y.test> ORCPT=rfc822;";
    // The longest lines are read (and their over-long parameter refused), one more octet is not.
    cases.push_back({"parameter_lines_limit",
                     kEhlo + line(mail, 1209) + line(mail, 1208) + kMail + line(rcpt, 1043) +
                         line(rcpt, 1042) + line("NOOP ", 513) + kQuit,
                     kGreeting + EhloReply() + kLineTooLong + "501 5.5.4 Bad ENVID parameter\r\n" +
                         kMailOk + kLineTooLong + "501 5.5.4 Bad ORCPT parameter\r\n" +
                         kLineTooLong + kBye,
                     {},
                     true});
  }
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
                   kMail + kRcpt + kData + kEhlo + kRcpt + kData + kRset + kMail + kMail + kRcpt +
                       kData + "x\r\n.\r\n",
                   kGreeting + kNeedHelo + kNeedMail + kNeedMail + EhloReply() + kNeedMail +
                       kNeedMail + kOk + kMailOk + "503 5.5.1 Error: nested MAIL command\r\n" +
                       kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("x\r\n")}});
  // A refused DATA wants RSET: what the client pipelined behind it may be the message, and must
  // neither be taken as message text nor start a transaction (RFC 2920 §3.1).
  cases.push_back({"refused_data_wants_rset",
                   kEhlo + kMail + kData + kRcpt + kData + "x\r\n.\r\n" + kMail + kRset + kMail +
                       kRcpt + kData + "y\r\n.\r\n",
                   kGreeting + EhloReply() + kMailOk + kNoRcpts + kSendRset + kSendRset + kUnknown +
                       kUnknown + kSendRset + kOk + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("y\r\n")}});
  cases.push_back({"refused_data_pipelined_body_cannot_deliver",
                   kEhlo + kMail + "RCPT TO:<v@foreign.test>\r\n" + kData +
                       "MAIL FROM:<x@y.test>\r\nRCPT TO:<b@local.test>\r\nDATA\r\nevil\r\n.\r\n" +
                       kQuit,
                   kGreeting + EhloReply() + kMailOk + RelayDenied("v@foreign.test") + kNoRcpts +
                       kSendRset + kSendRset + kSendRset + kUnknown + kUnknown + kBye,
                   {},
                   true,
                   With([](auto& o) {
                     o.client_may_relay = false;
                     o.local_domains = {"local.test"};
                   })});
  // The glue's rcpt_check (the suppression list) refuses one recipient with its own reply,
  // given the sender; the others of the transaction are taken.
  cases.push_back({"rcpt_check_refuses_a_listed_recipient",
                   kEhlo + kMail + "RCPT TO:<gone@y.test>\r\n" + kRcpt + kData + "hi\r\n.\r\n",
                   kGreeting + EhloReply() + kMailOk +
                       "550 5.1.1 <gone@y.test>: recipient suppressed since 2026-12-01T00:00:00Z "
                       "(InvalidRecipient)\r\n" +
                       kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("hi\r\n")},
                   false,
                   With([](auto& o) {
                     o.rcpt_check = [](std::string_view from, std::string_view mailbox) {
                       if (from != "a@x.test" || mailbox != "gone@y.test")
                         return std::string();
                       return std::string(
                           "550 5.1.1 <gone@y.test>: recipient suppressed since "
                           "2026-12-01T00:00:00Z (InvalidRecipient)");
                     };
                   })});
  // [delivery] dsn = false: DSN is not offered, and its parameters are refused (RFC 5321
  // §4.1.1.11) rather than taken and never honoured.
  cases.push_back({"dsn_off_is_not_offered_and_its_parameters_refused",
                   kEhlo + "MAIL FROM:<a@x.test> RET=HDRS\r\n" + kMail +
                       "RCPT TO:<b@y.test> NOTIFY=SUCCESS\r\n" + kRcpt + kData + "hi\r\n.\r\n",
                   kGreeting +
                       [] {
                         std::string e = EhloReply();
                         e.erase(e.find("250-DSN\r\n"), 9);
                         return e;
                       }() +
                       "555 5.5.4 DSN parameters are not supported here\r\n" + kMailOk +
                       "555 5.5.4 DSN parameters are not supported here\r\n" + kRcptOk + kGoAhead +
                       Queued(1),
                   {SimpleMsg("hi\r\n")},
                   false,
                   With([](auto& o) { o.dsn = false; })});
  cases.push_back({"data_without_mail_pipelined_body_cannot_deliver",
                   kEhlo + kData + "MAIL FROM:<x@y.test>\r\n" + kRcpt + kData + "evil\r\n.\r\n" +
                       kRset + kMail + kRcpt + kData + "good\r\n.\r\n",
                   kGreeting + EhloReply() + kNeedMail + kSendRset + kSendRset + kSendRset +
                       kUnknown + kUnknown + kOk + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("good\r\n")}});
  // EHLO also leaves the refused state (RFC 5321 §4.1.4).
  cases.push_back({"refused_data_then_ehlo",
                   kEhlo + kMail + kData + kEhlo + kMail + kRcpt + kData + ".\r\n",
                   kGreeting + EhloReply() + kMailOk + kNoRcpts + EhloReply() + kMailOk + kRcptOk +
                       kGoAhead + Queued(1),
                   {SimpleMsg("")}});
  cases.push_back({"unknown_commands",
                   "FOO\r\n\r\nMAILFROM:<a@x.test>\r\n NOOP\r\nSTART TLS\r\nNOOP\r\n",
                   kGreeting + Repeat(kUnknown, 5) + kOk,
                   {}});
  cases.push_back({"quit_stops_processing",
                   kEhlo + kQuit + "NOOP\r\n" + kMail + "garbage",
                   kGreeting + EhloReply() + kBye,
                   {},
                   true});
  cases.push_back({"too_many_errors",
                   "FOO\r\nBAR\r\nNOOP\r\nMAIL\r\nNOOP\r\n",
                   kGreeting + kUnknown + kUnknown + kOk + kNeedHelo +
                       "421 4.7.0 mx.test Error: too many errors\r\n",
                   {},
                   true,
                   With([](auto& o) { o.max_errors = 3; })});
  // A stored message forgives earlier errors.
  cases.push_back({"errors_reset_by_a_stored_message",
                   "FOO\r\nFOO\r\n" + kEhloThenTxn + ".\r\nFOO\r\nFOO\r\nNOOP\r\nFOO\r\n",
                   kGreeting + kUnknown + kUnknown + EhloReply() + kMailOk + kRcptOk + kGoAhead +
                       Queued(1) + kUnknown + kUnknown + kOk + kUnknown +
                       "421 4.7.0 mx.test Error: too many errors\r\n",
                   {SimpleMsg("")},
                   true,
                   With([](auto& o) { o.max_errors = 3; })});
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
           "MAIL FROM:<a@x.test> AUTH=<>\r\n" +  // AUTH not enabled: not a known parameter
           "MAIL FROM:<@r.test:a@x.test>  size=100   body=8bitmime  \r\n" + kRcpt + kData +
           "\xff\r\n.\r\n",
       kGreeting + EhloReply() + kMailOk + kOk + kMailOk + kOk + kMailOk + kOk + kBadSender +
           kBadSender + "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" +
           "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" +
           "555 5.5.4 Unsupported MAIL parameter\r\n" + "501 5.5.4 Bad SIZE parameter\r\n" +
           "501 5.5.4 Bad SIZE parameter\r\n" + "501 5.5.4 Bad SIZE parameter\r\n" +
           "501 5.5.4 Bad BODY parameter\r\n" + "501 5.5.4 Bad MAIL parameter syntax\r\n" +
           "501 5.5.4 Bad MAIL parameter syntax\r\n" +
           "550 5.6.7 Non-ASCII addresses not permitted for that sender\r\n" +
           "501 5.5.4 Bad SIZE parameter\r\n" +
           "552 5.3.4 Message size exceeds fixed maximum message size\r\n" +
           "555 5.5.4 Unsupported MAIL parameter\r\n" + kMailOk + kRcptOk + kGoAhead + Queued(1),
       {Msg("client.test", "a@x.test", {"b@y.test"}, "\xff\r\n", true)}});
  cases.push_back(
      {"rcpt_syntax",
       kEhlo + kMail + "RCPT TO:<>\r\n" + "RCPT TO:b@y.test\r\n" + "RCPT FROM:<b@y.test>\r\n" +
           "rcpt to: <B@Y.test>\r\n" + "RCPT TO:<Postmaster>\r\n" +
           "RCPT TO:<@r.test,@s.test:c@z.test>\r\n" + "RCPT TO:<d@z.test> FOO=1\r\n" +
           "RCPT TO:<d@z.test> =x\r\n" + "RCPT TO:<\xc3\xa9@z.test>\r\n" +
           "RCPT TO:<\"q u\"@[192.0.2.1]>\r\n" + kData + ".\r\n",
       kGreeting + EhloReply() + kMailOk + kBadRcpt + kBadRcpt +
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
           kRset + kMail + kRcpt + "DATA now\r\n" + kRset + kMail + kRcpt + kData + ".\r\n" +
           "Quit\r\n",
       kGreeting + kOk + kOk +
           "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n" +
           "501 5.5.4 Syntax: VRFY address\r\n" +
           Repeat("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\r\n",
                  2) +
           "501 5.5.4 Syntax: RSET\r\n" + kOk + "501 5.5.4 Syntax: EHLO hostname\r\n" +
           "501 5.5.4 Syntax: HELO hostname\r\n" + EhloReply() + kMailOk + EhloReply() + kNeedMail +
           kMailOk + kRcptOk + kOk + kNeedMail + kOk + kMailOk + kRcptOk +
           "501 5.5.4 Syntax: DATA\r\n" + kOk + kMailOk + kRcptOk + kGoAhead + Queued(1) + kBye,
       {Msg("again.test", "a@x.test", {"b@y.test"}, "")},
       true});
  cases.push_back({"help_lists_enabled_extensions",
                   "HELP\r\n",
                   kGreeting +
                       "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
                       "STARTTLS AUTH\r\n",
                   {},
                   false,
                   With([](auto& o) {
                     o.starttls = true;
                     o.auth = true;
                   })});
  // Commands may end in a bare LF (lenient, as Postfix); the data phase only knows CRLF, and the
  // bare LFs in it refuse the message, or are stored as CRLF.
  const std::string bare_lf_input =
      "EHLO client.test\nMAIL FROM:<a@x.test>\nRCPT TO:<b@y.test>\nDATA\n"
      "line1\n.\nstill body\r\n.\r\nQUIT\n";
  cases.push_back(
      {"bare_lf_commands", bare_lf_input, kEhloThenTxnReplies + kBareRefused + kBye, {}, true});
  cases.push_back({"bare_lf_commands_normalised",
                   bare_lf_input,
                   kEhloThenTxnReplies + Queued(1) + kBye,
                   {SimpleMsg("line1\r\n.\r\nstill body\r\n")},
                   true,
                   With([](auto& o) { o.bare_lf = BareLfPolicy::kNormalise; })});
  return cases;
}

// STARTTLS (RFC 3207). The harness completes the handshake after `input`.
std::vector<Case> StartTlsCases() {
  const ServerSession::Options tls = With([](auto& o) { o.starttls = true; });
  std::vector<Case> cases;
  // §4.2: after the handshake the session is as just greeted: EHLO again (MAIL before it is
  // refused), no STARTTLS offered or accepted any more.
  cases.push_back(
      {.name = "starttls_resets_the_session",
       .input = kEhlo + "STARTTLS\r\n",
       .output = kGreeting + EhloReply({.starttls = true}) + kTlsReady + kNeedHelo + EhloReply() +
                 kTlsActive + kMailOk + kRcptOk + kGoAhead + Queued(1) + kBye,
       .messages = {SimpleMsg("hi\r\n")},
       .closed = true,
       .options = tls,
       .after_tls =
           kMail + kEhlo + "STARTTLS\r\n" + kMail + kRcpt + kData + "hi\r\n.\r\n" + kQuit});
  // CVE-2011-0411: commands pipelined behind STARTTLS in the clear are dropped, not executed
  // inside TLS. The MAIL never gets a reply, so the RCPT after the handshake finds no transaction.
  cases.push_back({.name = "starttls_drops_pipelined_plaintext",
                   .input = kEhlo + "STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<b@y.test>\r\n",
                   .output = kGreeting + EhloReply({.starttls = true}) + kTlsReady + EhloReply() +
                             kNeedMail + kNeedMail + kBye,
                   .closed = true,
                   .options = tls,
                   .after_tls = kEhlo + kRcpt + kData + kQuit});
  // STARTTLS needs EHLO (not HELO), no argument, and no transaction.
  cases.push_back({.name = "starttls_refusals",
                   .input = "STARTTLS\r\nHELO client.test\r\nSTARTTLS\r\n" + kEhlo +
                            "STARTTLS now\r\n" + kMail + "STARTTLS\r\n" + kRset + "STARTTLS\r\n",
                   .output = kGreeting + kSendEhlo + "250 mx.test\r\n" + kSendEhlo +
                             EhloReply({.starttls = true}) + "501 5.5.4 Syntax: STARTTLS\r\n" +
                             kMailOk + kInTransaction + kOk + kTlsReady,
                   .options = tls});
  cases.push_back(
      {"starttls_not_configured",
       kEhlo + "STARTTLS\r\n" + kMail,
       kGreeting + EhloReply() + "502 5.5.1 Error: command not implemented\r\n" + kMailOk,
       {}});
  cases.push_back({"implicit_tls_offers_no_starttls",
                   kEhlo + "STARTTLS\r\n" + kMail,
                   kGreeting + EhloReply() + kTlsActive + kMailOk,
                   {},
                   false,
                   With([](auto& o) {
                     o.starttls = true;
                     o.implicit_tls = true;
                   })});
  return cases;
}

// AUTH PLAIN and LOGIN (RFC 4954, RFC 4616). The fake glue accepts alice / secret.
std::vector<Case> AuthCases() {
  const ServerSession::Options plaintext = With([](auto& o) {
    o.auth = true;
    o.auth_plaintext = true;
    o.client_may_relay = false;
    o.local_domains = {"local.test"};
  });
  std::vector<Case> cases;
  // Authenticated: relaying allowed, MAIL's AUTH= parameter accepted (and ignored), the user
  // kept with the message; a second AUTH refused.
  cases.push_back(
      {.name = "auth_plain_initial_response",
       .input = kEhlo + "RCPT TO:<b@foreign.test>\r\n" + kAuthAlice +
                "MAIL FROM:<a@x.test> AUTH=<>\r\nRCPT TO:<b@foreign.test>\r\n" + kData +
                "hi\r\n.\r\n" + kAuthAlice,
       .output = kGreeting + EhloReply({.auth = true}) + kNeedMail + kAuthOk + kMailOk + kRcptOk +
                 kGoAhead + Queued(1) + "503 5.5.1 Error: already authenticated\r\n",
       .messages = {Changed(Msg("client.test", "a@x.test", {"b@foreign.test"}, "hi\r\n"),
                            [](auto& m) { m.auth_user = "alice"; })},
       .options = plaintext,
       .auths = {kAliceRequest}});
  cases.push_back({.name = "auth_plain_challenge",
                   .input = kEhlo + "auth plain\r\nYWxpY2UAYWxpY2UAc2VjcmV0\r\n",
                   .output = kGreeting + EhloReply({.auth = true}) + "334 \r\n" + kAuthOk,
                   .options = plaintext,
                   .auths = {{"PLAIN", "alice", "alice", "secret"}}});
  cases.push_back(
      {.name = "auth_login",
       .input = kEhlo + "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
       .output = kGreeting + EhloReply({.auth = true}) + kLoginUser + kLoginPassword + kAuthOk,
       .options = plaintext,
       .auths = {{"LOGIN", "", "alice", "secret"}}});
  cases.push_back({.name = "auth_login_initial_response",
                   .input = kEhlo + "AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
                   .output = kGreeting + EhloReply({.auth = true}) + kLoginPassword + kAuthOk,
                   .options = plaintext,
                   .auths = {{"LOGIN", "", "alice", "secret"}}});
  const std::string long_line(12289, 'A');  // with its CRLF: 12291 > 12288 (RFC 4954 §4)
  cases.push_back(
      {.name = "auth_failures",
       .input = "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n" + kEhlo +
                "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"            // \0alice\0wrong
                "AUTH PLAIN\r\n*\r\n"                        // cancelled
                "AUTH PLAIN !!!!\r\n"                        // not base64
                "AUTH LOGIN\r\nYWxpY2U\r\n"                  // unpadded base64
                "AUTH CRAM-MD5\r\n"                          // not offered
                "AUTH\r\n"                                   // no mechanism
                "AUTH PLAIN =\r\n"                           // empty initial response
                "AUTH PLAIN AGFsaWNl\r\n"                    // \0alice: no password
                "AUTH PLAIN AABzZWNyZXQ=\r\n"                // \0\0secret: no user
                "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n" +  // bob\0alice\0secret: wrong authzid
                kMail +
                kAuthAlice + kRset + "AUTH LOGIN\r\n" + long_line + "\r\n" + kAuthAlice,
       .output = kGreeting + kSendEhlo + EhloReply({.auth = true}) + kAuthBad + "334 \r\n" +
                 "501 5.0.0 Authentication cancelled\r\n" + "501 5.5.2 Cannot decode response\r\n" +
                 kLoginUser + "501 5.5.2 Cannot decode response\r\n" +
                 "504 5.5.4 Unrecognized authentication type\r\n" +
                 "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n" + kAuthBad + kAuthBad +
                 kAuthBad + kAuthBad + kMailOk + kInTransaction + kOk + kLoginUser +
                 "500 5.5.6 Authentication Exchange line is too long\r\n" + kAuthOk,
       .options = plaintext,
       .auths = {
           {"PLAIN", "", "alice", "wrong"}, {"PLAIN", "bob", "alice", "secret"}, kAliceRequest}});
  // A failed AUTH counts toward max_errors.
  cases.push_back(
      {.name = "auth_failures_count_as_errors",
       .input =
           kEhlo + "AUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\n" + kAuthAlice,
       .output = kGreeting + EhloReply({.auth = true}) + kAuthBad + kAuthBad +
                 "421 4.7.0 mx.test Error: too many errors\r\n",
       .closed = true,
       .options = With([](auto& o) {
         o.auth = true;
         o.auth_plaintext = true;
         o.max_errors = 2;
       }),
       .auths = {{"PLAIN", "", "alice", "wrong"}, {"PLAIN", "", "alice", "wrong"}}});
  // Without TLS no AUTH is offered, and trying it gets 538 (RFC 4954 §6); after STARTTLS it
  // works, and the message says so in its Received: line (ESMTPSA, RFC 3848).
  cases.push_back(
      {.name = "auth_needs_tls",
       .input = kEhlo + kAuthAlice + "STARTTLS\r\n",
       .output = kGreeting + EhloReply({.starttls = true}) +
                 "538 5.7.11 Encryption required for requested authentication mechanism\r\n" +
                 kTlsReady + EhloReply({.auth = true}) + kAuthOk + kMailOk + kRcptOk + kGoAhead +
                 Queued(1),
       .messages = {Changed(SimpleMsg("Received: from client.test\r\n\tby mx.test (spate) with "
                                      "ESMTPSA (TLSv1.3 TLS_AES_256_GCM_SHA384)\r\n\tfor "
                                      "<b@y.test>; " +
                                      kNowText + "\r\nhi\r\n"),
                            [](auto& m) { m.auth_user = "alice"; })},
       .options = With([](auto& o) {
         o.auth = true;
         o.starttls = true;
         o.add_received = true;
       }),
       .after_tls = kEhlo + kAuthAlice + kMail + kRcpt + kData + "hi\r\n.\r\n",
       .auths = {kAliceRequest}});
  cases.push_back({"auth_not_enabled",
                   kEhlo + kAuthAlice,
                   kGreeting + EhloReply() + "503 5.5.1 Error: authentication not enabled\r\n",
                   {}});
  // STARTTLS forgets an authentication made in the clear (RFC 3207 §4.2).
  cases.push_back({.name = "starttls_forgets_authentication",
                   .input = kEhlo + kAuthAlice + "STARTTLS\r\n",
                   .output = kGreeting + EhloReply({.starttls = true, .auth = true}) + kAuthOk +
                             kTlsReady + EhloReply({.auth = true}) + kMailOk +
                             RelayDenied("b@foreign.test"),
                   .options = With([](auto& o) {
                     o.auth = true;
                     o.auth_plaintext = true;
                     o.starttls = true;
                     o.client_may_relay = false;
                   }),
                   .after_tls = kEhlo + kMail + "RCPT TO:<b@foreign.test>\r\n",
                   .auths = {kAliceRequest}});
  return cases;
}

// CHUNKING (RFC 3030).
std::vector<Case> BdatCases() {
  std::vector<Case> cases;
  const std::string txn = kEhlo + kMail + kRcpt;
  const std::string txn_replies = kGreeting + EhloReply() + kMailOk + kRcptOk;
  cases.push_back(
      {"bdat_chunks",
       txn + "BDAT 7\r\nSubject" + "BDAT 9\r\n: x\r\n\r\nhi" + "bdat 2 last\r\n\r\n" + kQuit,
       txn_replies + Octets(7) + Octets(9) + Queued(1) + kBye,
       {SimpleMsg("Subject: x\r\n\r\nhi\r\n")},
       true});
  cases.push_back(
      {"bdat_zero_last",
       txn + "BDAT 4\r\nhi\r\nBDAT 0\r\nBDAT 0 LAST\r\n" + kMail + kRcpt + "BDAT 0 LAST\r\n",
       txn_replies + Octets(4) + Octets(0) + Queued(1) + kMailOk + kRcptOk + Queued(2),
       {SimpleMsg("hi\r\n"), SimpleMsg("")}});
  // No dot-stuffing, no terminator: a chunk is its octets (§2). What follows it is a command.
  cases.push_back({"bdat_is_raw",
                   txn + "BDAT 17 LAST\r\n.\r\n..x\r\n.\r\nQUIT\r\n" + kMail + kRcpt +
                       "BDAT 3 LAST\r\nabc" + kQuit,
                   txn_replies + Queued(1) + kMailOk + kRcptOk + Queued(2) + kBye,
                   {SimpleMsg(".\r\n..x\r\n.\r\nQUIT\r\n"), SimpleMsg("abc")},
                   true});
  // Refused BDATs: the octets are still read (§2) and never taken as commands; the session
  // then wants RSET.
  cases.push_back(
      {"bdat_without_transaction",
       kEhlo + "BDAT 22\r\nMAIL FROM:<a@x.test>\r\n" + kRcpt + kRset + kMail +
           "BDAT 20 LAST\r\nRCPT TO:<b@y.test>\r\n" + kRset + kMail + kRcpt + "BDAT 3 LAST\r\nabc",
       kGreeting + EhloReply() + kNeedMail + kSendRset + kOk + kMailOk +
           "503 5.5.1 Error: need RCPT command\r\n" + kOk + kMailOk + kRcptOk + Queued(1),
       {SimpleMsg("abc")}});
  cases.push_back({"bdat_then_data",
                   txn + "BDAT 3\r\nabc" + kData + ".\r\n" + kRset + kMail + kRcpt +
                       "BDAT 3\r\nabc" + kRcpt + "BDAT 3 LAST\r\ndef",
                   txn_replies + Octets(3) + "503 5.5.1 Error: DATA after BDAT\r\n" + kUnknown +
                       kOk + kMailOk + kRcptOk + Octets(3) +
                       "503 5.5.1 Error: RCPT after BDAT\r\n" + Queued(1),
                   {SimpleMsg("abcdef")}});
  cases.push_back({"bdat_after_last",
                   txn + "BDAT 3 LAST\r\nabcBDAT 3 LAST\r\ndef" + kRset,
                   txn_replies + Queued(1) + kNeedMail + kOk,
                   {SimpleMsg("abc")}});
  // Too big: refused at the chunk that goes over; the chunk pipelined behind is read and refused.
  const std::string line100 = std::string(98, 'z') + "\r\n";
  cases.push_back({"bdat_too_big",
                   txn + "BDAT 6000\r\n" + Repeat(line100, 60) + "BDAT 6000\r\n" +
                       Repeat(line100, 60) + "BDAT 5 LAST\r\nhello" + kRset + kMail + kRcpt +
                       "BDAT 10000 LAST\r\n" + Repeat(line100, 100) + kMail + kRcpt +
                       "BDAT 10001 LAST\r\n" + Repeat(line100, 100) + "z" + kQuit,
                   txn_replies + Octets(6000) + kTooBig + kSendRset + kOk + kMailOk + kRcptOk +
                       Queued(1) + kMailOk + kRcptOk + kTooBig + kBye,
                   {SimpleMsg(Repeat(line100, 100))},
                   true});
  cases.push_back({"bdat_long_line",
                   txn + "BDAT 1001 LAST\r\n" + std::string(1001, 'x') + kQuit,
                   txn_replies +
                       "554 5.6.0 Error: message has a text line longer than 1000 octets "
                       "(RFC 5321 4.5.3.1.6)\r\n" +
                       kBye,
                   {},
                   true});
  // Bare CR/LF in chunks: a CRLF split between chunks is no bare CR; a message ending in a CR
  // ends in a bare one.
  cases.push_back({"bdat_crlf_across_chunks",
                   txn + "BDAT 2\r\na\rBDAT 4 LAST\r\n\nb\r\n",
                   txn_replies + Octets(2) + Queued(1),
                   {SimpleMsg("a\r\nb\r\n")}});
  for (const auto& [name, chunk] : std::vector<std::pair<std::string, std::string>>{
           {"lf", "a\nb\r\n"}, {"cr", "a\rb\r\n"}, {"final_cr", "a\r\nb\r"}}) {
    cases.push_back({"bdat_bare_" + name + "_refused",
                     txn + "BDAT " + std::to_string(chunk.size()) + " LAST\r\n" + chunk + kMail +
                         kRcpt + "BDAT 2 LAST\r\nok",
                     txn_replies + kBareRefused + kMailOk + kRcptOk + Queued(1),
                     {SimpleMsg("ok")}});
  }
  cases.push_back({"bdat_bare_newlines_normalised",
                   txn + "BDAT 4\r\na\nb\rBDAT 4 LAST\r\n\rc\n\r",
                   txn_replies + Octets(4) + Queued(1),
                   {SimpleMsg("a\r\nb\r\n\r\nc\r\n\r\n")},
                   false,
                   With([](auto& o) { o.bare_lf = BareLfPolicy::kNormalise; })});
  // A BDAT line whose size cannot be read loses the framing: 501, then 421 and close.
  for (const std::string& bad :
       {"BDAT"s, "BDAT x"s, "BDAT -1"s, "BDAT 10 NOTLAST"s, "BDAT 1 LAST more"s, "BDAT 1  LAST"s,
        "BDAT 123456789012345678901"s, "BDAT 0x10"s}) {
    cases.push_back({"bdat_bad_syntax_" + std::to_string(cases.size()),
                     txn + bad + "\r\nabc\r\nNOOP\r\n",
                     txn_replies + "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n" +
                         "421 4.5.0 mx.test Error: lost the BDAT framing, closing connection\r\n",
                     {},
                     true});
  }
  return cases;
}

// SMTPUTF8 (RFC 6531) and DSN (RFC 3461) parameters.
std::vector<Case> ParameterCases() {
  std::vector<Case> cases;
  cases.push_back({"smtputf8",
                   kEhlo +
                       "MAIL FROM:<j\xc3\xb6rg@B\xc3\xbc"
                       "cher.test> SMTPUTF8\r\n" +
                       "RCPT TO:<\xc3\xa9lise@x.test>\r\n" +
                       "RCPT TO:<\"\xe2\x82\xac q\"@[192.0.2.1]>\r\n" +
                       "RCPT TO:<\xf0\x9f\x93\xa7@\xe4\xbe\x8b.test>\r\n" +
                       "RCPT TO:<\xff@x.test>\r\n" +  // not UTF-8
                       kData + "hi\r\n.\r\n" + kMail + "RCPT TO:<\xc3\xa9@x.test>\r\n",
                   kGreeting + EhloReply() + kMailOk + kRcptOk + kRcptOk + kRcptOk + kBadRcpt +
                       kGoAhead + Queued(1) + kMailOk +
                       "553 5.6.7 Non-ASCII addresses not permitted for that recipient\r\n",
                   {Changed(Msg("client.test",
                                "j\xc3\xb6rg@B\xc3\xbc"
                                "cher.test",
                                {"\xc3\xa9lise@x.test", "\"\xe2\x82\xac q\"@[192.0.2.1]",
                                 "\xf0\x9f\x93\xa7@\xe4\xbe\x8b.test"},
                                "hi\r\n"),
                            [](auto& m) { m.smtputf8 = true; })}});
  cases.push_back(
      {"smtputf8_refusals",
       kEhlo + "MAIL FROM:<j\xc3\xb6rg@x.test>\r\n" +             // no SMTPUTF8
           "MAIL FROM:<j\xc3@x.test> SMTPUTF8\r\n" +              // truncated
           "MAIL FROM:<j\xc0\xaf@x.test> SMTPUTF8\r\n" +          // overlong
           "MAIL FROM:<j\xed\xa0\x80@x.test> SMTPUTF8\r\n" +      // surrogate
           "MAIL FROM:<j\xf4\x90\x80\x80@x.test> SMTPUTF8\r\n" +  // > U+10FFFF
           "MAIL FROM:<a@x.test> SMTPUTF8=yes\r\n" +
           "MAIL FROM:<a@[IPv6:\xc3\xa9::1]> SMTPUTF8\r\n" +
           "MAIL FROM:<\xc3\xa9@x.test> SMTPUTF8 smtputf8\r\n",  // a repeat is accepted
       kGreeting + EhloReply() + "550 5.6.7 Non-ASCII addresses not permitted for that sender\r\n" +
           Repeat(kBadSender, 4) + "501 5.5.4 Bad SMTPUTF8 parameter\r\n" + kBadSender + kMailOk,
       {}});
  cases.push_back({"dsn_parameters",
                   kEhlo + "MAIL FROM:<a@x.test> RET=hdrs ENVID=QQ+2B1+3Dx\r\n" +
                       "RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40y.test\r\n" +
                       "RCPT TO:<c@y.test> notify=never\r\n" + "RCPT TO:<d@y.test>\r\n" +
                       "RCPT TO:<e@y.test> ORCPT=rfc822;" + std::string(493, 'o') +
                       " NOTIFY=DELAY,FAILURE,SUCCESS\r\n" + kData + ".\r\n" +
                       "MAIL FROM:<a@x.test> RET=FULL ENVID=" + std::string(100, 'e') + "\r\n" +
                       kRcpt + kData + ".\r\n",
                   kGreeting + EhloReply() + kMailOk + Repeat(kRcptOk, 4) + kGoAhead + Queued(1) +
                       kMailOk + kRcptOk + kGoAhead + Queued(2),
                   {Changed(Msg("client.test", "a@x.test",
                                {"b@y.test", "c@y.test", "d@y.test", "e@y.test"}, ""),
                            [](auto& m) {
                              m.ret = ReceivedMessage::Ret::kHdrs;
                              m.envid = "QQ+1=x";
                              m.dsn = {{kNotifySuccess | kNotifyFailure, "rfc822;b@y.test"},
                                       {kNotifyNever, ""},
                                       {0, ""},
                                       {kNotifySuccess | kNotifyFailure | kNotifyDelay,
                                        "rfc822;" + std::string(493, 'o')}};
                            }),
                    Changed(SimpleMsg(""), [](auto& m) {
                      m.ret = ReceivedMessage::Ret::kFull;
                      m.envid = std::string(100, 'e');
                    })}});
  {
    const std::vector<std::string> bad_mail = {"RET=ALL",
                                               "RET",
                                               "RET=FULL RET=FULL",
                                               "RET=FULL RET=HDRS",
                                               "ENVID=a+2b",
                                               "ENVID=a+2",
                                               "ENVID=+0A",
                                               "ENVID=a ENVID=a",
                                               "ENVID=" + std::string(101, 'e')};
    const std::vector<std::string> bad_rcpt = {"NOTIFY=NEVER,SUCCESS",
                                               "NOTIFY=SUCCESS,NEVER",
                                               "NOTIFY=FOO",
                                               "NOTIFY=SUCCESS,SUCCESS",
                                               "NOTIFY=SUCCESS NOTIFY=DELAY",
                                               "NOTIFY=SUCCESS,",
                                               "NOTIFY=,DELAY",
                                               "NOTIFY",
                                               "ORCPT=rfc822",
                                               "ORCPT=;a",
                                               "ORCPT=rfc822;a+0Ab",
                                               "ORCPT=rfc822;a ORCPT=rfc822;a",
                                               "ORCPT=rfc(822);a",
                                               "ORCPT=rfc822;" + std::string(494, 'o'),
                                               "ORCPT"};
    std::string input = kEhlo;
    std::string output = kGreeting + EhloReply();
    for (const std::string& p : bad_mail) {
      input += "MAIL FROM:<a@x.test> " + p + "\r\n";
      output += "501 5.5.4 Bad " + p.substr(0, p.find_first_of("= ")) + " parameter\r\n";
    }
    input += kMail;
    output += kMailOk;
    for (const std::string& p : bad_rcpt) {
      input += "RCPT TO:<b@y.test> " + p + "\r\n";
      output += "501 5.5.4 Bad " + p.substr(0, p.find_first_of("= ")) + " parameter\r\n";
    }
    cases.push_back(
        {"dsn_refusals", input, output, {}, false, With([](auto& o) { o.max_errors = 100; })});
  }
  // RFC 6710: MT-PRIORITY=N from a client in the relay networks is kept, -9 to 9 with an
  // optional sign; a transaction without one has none (RSET and a new MAIL forget it).
  auto with_priority = [](ReceivedMessage m, int8_t p) {
    m.priority = p;
    return m;
  };
  cases.push_back({"mt_priority_from_relay_networks",
                   kEhlo + "MAIL FROM:<a@x.test> MT-PRIORITY=-5\r\n" + kRcpt + kData +
                       "one\r\n.\r\n" + "MAIL FROM:<a@x.test> mt-priority=+9 SIZE=10\r\n" + kRcpt +
                       kData + "two\r\n.\r\n" + "MAIL FROM:<a@x.test> MT-PRIORITY=0\r\n" + kRcpt +
                       kData + "three\r\n.\r\n" + "MAIL FROM:<a@x.test> MT-PRIORITY=7\r\n" + kRset +
                       kMail + kRcpt + kData + "four\r\n.\r\n",
                   kGreeting + EhloReply() + kMailOk + kRcptOk + kGoAhead + Queued(1) + kMailOk +
                       kRcptOk + kGoAhead + Queued(2) + kMailOk + kRcptOk + kGoAhead + Queued(3) +
                       kMailOk + kOk + kMailOk + kRcptOk + kGoAhead + Queued(4),
                   {with_priority(SimpleMsg("one\r\n"), -5), with_priority(SimpleMsg("two\r\n"), 9),
                    with_priority(SimpleMsg("three\r\n"), 0), SimpleMsg("four\r\n")}});
  // An authenticated client outside the relay networks is trusted with it too (AUTH comes
  // before MAIL, RFC 4954 §4).
  cases.push_back(
      {"mt_priority_after_auth",
       kEhlo + kAuthAlice + "MAIL FROM:<a@x.test> MT-PRIORITY=3\r\n" + kRcpt + kData + "x\r\n.\r\n",
       kGreeting + EhloReply({.auth = true}) + kAuthOk + kMailOk + kRcptOk + kGoAhead + Queued(1),
       {Changed(SimpleMsg("x\r\n"),
                [](auto& m) {
                  m.priority = 3;
                  m.auth_user = "alice";
                })},
       false,
       With([](auto& o) {
         o.client_may_relay = false;
         o.auth = true;
         o.auth_plaintext = true;
       }),
       {},
       "",
       {kAliceRequest}});
  // From anyone else (here: mail to a local domain, no AUTH) the parameter is checked and
  // dropped: the message is stored as if it had none (RFC 6710 §4.1).
  auto untrusted = With([](auto& o) {
    o.client_may_relay = false;
    o.local_domains = {"y.test"};
    o.max_errors = 100;
  });
  cases.push_back({"mt_priority_ignored_from_untrusted_clients",
                   kEhlo + "MAIL FROM:<a@x.test> MT-PRIORITY=9\r\n" + kRcpt + kData + "x\r\n.\r\n",
                   kGreeting + EhloReply() + kMailOk + kRcptOk + kGoAhead + Queued(1),
                   {SimpleMsg("x\r\n")},
                   false,
                   untrusted});
  // RFC 6710 §3: one digit and an optional sign, given once; anything else is 501 5.5.4, from
  // trusted and untrusted clients alike, and leaves the session ready for a good MAIL.
  {
    const std::vector<std::string> bad = {"MT-PRIORITY=10",
                                          "MT-PRIORITY=x",
                                          "MT-PRIORITY=--1",
                                          "MT-PRIORITY=+-1",
                                          "MT-PRIORITY=-10",
                                          "MT-PRIORITY=09",
                                          "MT-PRIORITY=+",
                                          "MT-PRIORITY=1.5",
                                          "MT-PRIORITY",
                                          "MT-PRIORITY=1 MT-PRIORITY=1",
                                          "MT-PRIORITY=1 mt-priority=-2"};
    std::string input = kEhlo;
    std::string output = kGreeting + EhloReply();
    for (const std::string& p : bad) {
      input += "MAIL FROM:<a@x.test> " + p + "\r\n";
      output += "501 5.5.4 Bad MT-PRIORITY parameter\r\n";
    }
    input += "MAIL FROM:<a@x.test> MT-PRIORITY=-9\r\n" + kRcpt + kData + "x\r\n.\r\n";
    output += kMailOk + kRcptOk + kGoAhead + Queued(1);
    cases.push_back({"mt_priority_refusals",
                     input,
                     output,
                     {with_priority(SimpleMsg("x\r\n"), -9)},
                     false,
                     With([](auto& o) { o.max_errors = 100; })});
    cases.push_back(
        {"mt_priority_refusals_untrusted", input, output, {SimpleMsg("x\r\n")}, false, untrusted});
  }
  return cases;
}

// Headers the session adds (RFC 5321 §4.4, RFC 5322 §3.6). Fixed clock: kNow.
ServerSession::Options HeaderOptions() {
  return With([](auto& o) {
    o.add_received = true;
    o.add_missing_headers = true;
    o.client_address = "192.0.2.1";
    o.id_nonce = "n0nce/";  // the '/' is dropped
  });
}

// The Received: line after EHLO client.test, for the one recipient b@y.test.
const std::string kReceivedOne =
    "Received: from client.test ([192.0.2.1])\r\n\tby mx.test (spate) with ESMTP\r\n\tfor "
    "<b@y.test>; " +
    kNowText + "\r\n";
const std::string kDate = "Date: " + kNowText + "\r\n";

// The Message-ID: of the session's n-th stored message, under HeaderOptions().
std::string MessageId(int n) {
  return "Message-ID: <20240102030405.n0nce." + std::to_string(n) + "@mx.test>\r\n";
}

// "BDAT <size>[ LAST]" and the chunk.
std::string Bdat(std::string_view chunk, bool last = false) {
  return "BDAT " + std::to_string(chunk.size()) + (last ? " LAST" : "") + "\r\n" +
         std::string(chunk);
}

std::vector<Case> HeaderCases() {
  const ServerSession::Options headers = HeaderOptions();
  std::vector<Case> cases;
  cases.push_back(
      {"headers_added",
       kEhloThenTxn + "Subject: x\r\n\r\nhi\r\nDate: in the body\r\n.\r\n" + kMail + kRcpt +
           "RCPT TO:<c@y.test>\r\n" + kData +
           "date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-ID: <a@b>\r\n\r\nx\r\n.\r\n" + kMail +
           kRcpt + kData + "hello\r\nDate: x\r\n.\r\n" + kMail + kRcpt + kData +
           "Subject: a\r\n b\r\n\tc\r\nDate: d\r\n" + ".\r\n" + kMail + kRcpt + kData + ".\r\n" +
           kMail + kRcpt + kData + " folded\r\n\r\n.\r\n",
       kEhloThenTxnReplies + Queued(1) + kMailOk + kRcptOk + kRcptOk + kGoAhead + Queued(2) +
           kMailOk + kRcptOk + kGoAhead + Queued(3) + kMailOk + kRcptOk + kGoAhead + Queued(4) +
           kMailOk + kRcptOk + kGoAhead + Queued(5) + kMailOk + kRcptOk + kGoAhead + Queued(6),
       {SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(1) +
                  "\r\nhi\r\nDate: in the body\r\n"),
        Msg("client.test", "a@x.test", {"b@y.test", "c@y.test"},
            "Received: from client.test ([192.0.2.1])\r\n\tby mx.test (spate) with ESMTP; " +
                kNowText +
                "\r\ndate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-ID: <a@b>\r\n\r\nx\r\n"),
        // No header section: the fields go first, then an empty line keeps the text body.
        SimpleMsg(kReceivedOne + kDate + MessageId(3) + "\r\nhello\r\nDate: x\r\n"),
        // All header: the fields go at the end; folded lines belong to their field.
        SimpleMsg(kReceivedOne + "Subject: a\r\n b\r\n\tc\r\nDate: d\r\n" + MessageId(4)),
        SimpleMsg(kReceivedOne + kDate + MessageId(5)),
        // A first line that starts with white space is no header field.
        SimpleMsg(kReceivedOne + kDate + MessageId(6) + "\r\n folded\r\n\r\n")},
       false,
       headers});
  // HELO: plain SMTP; an unterminated BDAT header line is ended before the added fields; the
  // HELO argument is made safe for the header (an 8-bit octet; control octets are refused).
  cases.push_back({"headers_helo_bdat",
                   "HELO client\x80.test\r\n" + kMail + kRcpt + "BDAT 10 LAST\r\nSubject: x",
                   kGreeting + "250 mx.test\r\n" + kMailOk + kRcptOk + Queued(1),
                   {Msg("client\x80.test", "a@x.test", {"b@y.test"},
                        "Received: from client?.test ([192.0.2.1])\r\n\tby mx.test (spate) with "
                        "SMTP\r\n\tfor <b@y.test>; " +
                            kNowText + "\r\nSubject: x\r\n" + kDate + MessageId(1))},
                   false,
                   headers});
  cases.push_back(
      {"headers_smtputf8_implicit_tls_auth",
       kEhlo + kAuthAlice + "MAIL FROM:<a@x.test> SMTPUTF8\r\n" + kRcpt + kData + "x\r\n.\r\n",
       kGreeting + EhloReply({.auth = true}) + kAuthOk + kMailOk + kRcptOk + kGoAhead + Queued(1),
       {Changed(SimpleMsg("Received: from client.test\r\n\tby mx.test (spate) with UTF8SMTPSA\r\n"
                          "\tfor <b@y.test>; " +
                          kNowText + "\r\nx\r\n"),
                [](auto& m) {
                  m.smtputf8 = true;
                  m.auth_user = "alice";
                })},
       false,
       With([](auto& o) {
         o.add_received = true;
         o.implicit_tls = true;  // no TlsInfo given: no TLS comment
         o.auth = true;
       }),
       {},
       "",
       {kAliceRequest}});
  cases.push_back({"headers_missing_only",
                   kEhloThenTxn + "Subject: x\r\n\r\n.\r\n",
                   kEhloThenTxnReplies + Queued(1),
                   {SimpleMsg("Subject: x\r\n" + kDate +
                              "Message-ID: <20240102030405.1@mx.test>\r\n"
                              "\r\n")},
                   false,
                   With([](auto& o) { o.add_missing_headers = true; })});
  return cases;
}

// Where the header section ends (the first empty line, or the first line that is no header
// field), wherever the chunks and the feeds cut the text: the missing Date: and Message-ID: go
// there, never elsewhere.
std::vector<Case> HeaderSectionCases() {
  const std::string txn = kEhlo + kMail + kRcpt;
  const std::string txn_replies = kGreeting + EhloReply() + kMailOk + kRcptOk;
  const std::string next = kMailOk + kRcptOk;
  std::vector<Case> cases;
  // BDAT chunk boundaries inside a field name, between the CR and the LF of the empty line,
  // inside a first line that turns out to be no field, right before the empty line.
  cases.push_back(
      {"header_section_ends_inside_a_chunk",
       txn + Bdat("Subject: x\r\nFro") + Bdat("m: y\r\n\r\nbody\r\nmore") + Bdat("\r\n.", true) +
           kMail + kRcpt + Bdat("Subject: x\r\n\r") + Bdat("\nbody\r\n", true) + kMail + kRcpt +
           Bdat("Subjec") + Bdat("t x\r\nDate: d\r\n", true) + kMail + kRcpt +
           Bdat("Subject: x\r\n") + Bdat("\r\nbody", true),
       txn_replies + Octets(15) + Octets(18) + Queued(1) + next + Octets(13) + Queued(2) + next +
           Octets(6) + Queued(3) + next + Octets(12) + Queued(4),
       {SimpleMsg(kReceivedOne + "Subject: x\r\nFrom: y\r\n" + kDate + MessageId(1) +
                  "\r\nbody\r\nmore\r\n."),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(2) + "\r\nbody\r\n"),
        SimpleMsg(kReceivedOne + kDate + MessageId(3) + "\r\nSubject x\r\nDate: d\r\n"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(4) + "\r\nbody")},
       false,
       HeaderOptions()});
  // DATA: the header section is what remains after unstuffing (a leading "." is not part of it).
  cases.push_back({"header_section_after_unstuffing",
                   kEhloThenTxn + "..X-Dot: y\r\nSubject: x\r\n\r\n.body\r\n..\r\n.\r\n",
                   kEhloThenTxnReplies + Queued(1),
                   {SimpleMsg(kReceivedOne + ".X-Dot: y\r\nSubject: x\r\n" + kDate + MessageId(1) +
                              "\r\nbody\r\n.\r\n")},
                   false,
                   HeaderOptions()});
  // Fields already there (any case, folded, split between chunks) are not added again; the
  // Message-ID number counts every stored message, with or without an added Message-ID.
  cases.push_back({"headers_already_present",
                   kEhloThenTxn + "Message-ID: <m@x>\r\nSubject: s\r\nDATE:\r\n " + kNowText +
                       "\r\n\r\nbody\r\n.\r\n" + kMail + kRcpt + Bdat("Da") +
                       Bdat("te: x\r\nMessage-") + Bdat("ID: <a@b>\r\n\r\nz", true) + kMail +
                       kRcpt + kData + "message-id: <q@r>\r\n\r\nx\r\n.\r\n" + kMail + kRcpt +
                       kData + "date: d\r\n\r\n.\r\n",
                   kEhloThenTxnReplies + Queued(1) + next + Octets(2) + Octets(15) + Queued(2) +
                       next + kGoAhead + Queued(3) + next + kGoAhead + Queued(4),
                   {SimpleMsg(kReceivedOne + "Message-ID: <m@x>\r\nSubject: s\r\nDATE:\r\n " +
                              kNowText + "\r\n\r\nbody\r\n"),
                    SimpleMsg(kReceivedOne + "Date: x\r\nMessage-ID: <a@b>\r\n\r\nz"),
                    SimpleMsg(kReceivedOne + "message-id: <q@r>\r\n" + kDate + "\r\nx\r\n"),
                    SimpleMsg(kReceivedOne + "date: d\r\n" + MessageId(4) + "\r\n")},
                   false,
                   HeaderOptions()});
  // The header section ends exactly where the data does: after its empty line, after its last
  // field (with or without CRLF, in a chunk of its own or not), or inside a last line that is no
  // field.
  cases.push_back(
      {"header_section_ends_at_end_of_data",
       kEhloThenTxn + "Subject: x\r\n\r\n.\r\n" + kMail + kRcpt + Bdat("Subject: x\r\n\r\n", true) +
           kMail + kRcpt + Bdat("Subject: x\r\n", true) + kMail + kRcpt + Bdat("Subject: x\r\n") +
           "BDAT 0 LAST\r\n" + kMail + kRcpt + Bdat("Subject: x\r\nnot a field", true) + kMail +
           kRcpt + Bdat("Subject: x\r\nword", true) + kMail + kRcpt + Bdat("Subject: x") +
           "BDAT 0 LAST\r\n",
       kEhloThenTxnReplies + Queued(1) + next + Queued(2) + next + Queued(3) + next + Octets(12) +
           Queued(4) + next + Queued(5) + next + Queued(6) + next + Octets(10) + Queued(7),
       {SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(1) + "\r\n"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(2) + "\r\n"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(3)),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(4)),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(5) + "\r\nnot a field"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(6) + "\r\nword"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(7))},
       false,
       HeaderOptions()});
  // No header section: the first line is empty, or no field (":" first, an 8-bit octet in the
  // name, a space in it; a NUL never gets this far: the message is refused, or it is stripped). The
  // fields go first, then an empty line.
  cases.push_back(
      {"body_without_headers",
       kEhloThenTxn + "hello world\r\n\r\nbye\r\n.\r\n" + kMail + kRcpt + kData +
           "\r\nbody\r\n.\r\n" + kMail + kRcpt + kData + ": x\r\n.\r\n" + kMail + kRcpt + kData +
           "\xc3\xa9t\xc3\xa9: x\r\n.\r\n" + kMail + kRcpt + Bdat("no header", true),
       kEhloThenTxnReplies + Queued(1) + next + kGoAhead + Queued(2) + next + kGoAhead + Queued(3) +
           next + kGoAhead + Queued(4) + next + Queued(5),
       {SimpleMsg(kReceivedOne + kDate + MessageId(1) + "\r\nhello world\r\n\r\nbye\r\n"),
        SimpleMsg(kReceivedOne + kDate + MessageId(2) + "\r\nbody\r\n"),
        SimpleMsg(kReceivedOne + kDate + MessageId(3) + "\r\n: x\r\n"),
        SimpleMsg(kReceivedOne + kDate + MessageId(4) + "\r\n\xc3\xa9t\xc3\xa9: x\r\n"),
        SimpleMsg(kReceivedOne + kDate + MessageId(5) + "\r\nno header")},
       false,
       HeaderOptions()});
  // Bare LF and bare CR stored as CRLF: they end header lines, and make empty lines, as CRLF.
  ServerSession::Options normalise = HeaderOptions();
  normalise.bare_lf = BareLfPolicy::kNormalise;
  cases.push_back(
      {"header_section_bare_lf_normalised",
       kEhloThenTxn + "Subject: x\nFrom: y\r\n\nbody\r\n.\r\n" + kMail + kRcpt + kData +
           "Subject: x\r\r\nbody\r\n.\r\n" + kMail + kRcpt + kData + "\nbody\r\n.\r\n" + kMail +
           kRcpt + Bdat("Subject: x\r", true) + kMail + kRcpt + Bdat("Subject: x\r") +
           Bdat("\rbody", true),
       kEhloThenTxnReplies + Queued(1) + next + kGoAhead + Queued(2) + next + kGoAhead + Queued(3) +
           next + Queued(4) + next + Octets(11) + Queued(5),
       {SimpleMsg(kReceivedOne + "Subject: x\r\nFrom: y\r\n" + kDate + MessageId(1) +
                  "\r\nbody\r\n"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(2) + "\r\nbody\r\n"),
        SimpleMsg(kReceivedOne + kDate + MessageId(3) + "\r\nbody\r\n"),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(4)),
        SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(5) + "\r\nbody")},
       false,
       normalise});
  // Limits count the client's octets only, never the added fields; a message refused on the way
  // (a header line too long, too big at a chunk) is dropped whole and takes no Message-ID
  // number.
  const std::string line100 = std::string(98, 'z') + "\r\n";
  const std::string exact = "Subject: x\r\n\r\n" + Repeat(line100, 99) + std::string(86, 'z');
  cases.push_back(
      {"header_section_limits",
       kEhloThenTxn + std::string(1001, 'X') + ": y\r\n\r\n.\r\n" + kMail + kRcpt +
           Bdat("Subject: x\r\n") + Bdat(Repeat(line100, 100)) + kRset + kMail + kRcpt +
           Bdat(exact, true) + kMail + kRcpt + Bdat(exact + "z", true) +
           "MAIL FROM:<a@x.test> SIZE=20\r\n" + kRcpt + kData + "Subject: ok\r\n\r\nz\r\n.\r\n",
       kEhloThenTxnReplies +
           "554 5.6.0 Error: message has a text line longer than 1000 octets "
           "(RFC 5321 4.5.3.1.6)\r\n" +
           next + Octets(12) + kTooBig + kOk + next + Queued(1) + next + kTooBig + next + kGoAhead +
           Queued(2),
       {SimpleMsg(kReceivedOne + "Subject: x\r\n" + kDate + MessageId(1) + "\r\n" +
                  Repeat(line100, 99) + std::string(86, 'z')),
        SimpleMsg(kReceivedOne + "Subject: ok\r\n" + kDate + MessageId(2) + "\r\nz\r\n")},
       false,
       HeaderOptions()});
  return cases;
}

std::vector<Case> AllCases() {
  std::vector<Case> all;
  for (auto* make : {&BasicCases, &SmugglingCases, &LimitCases, &CommandCases, &StartTlsCases,
                     &AuthCases, &BdatCases, &ParameterCases, &HeaderCases, &HeaderSectionCases}) {
    for (Case& c : make()) {
      all.push_back(std::move(c));
    }
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(All, ConversationTest, testing::ValuesIn(AllCases()),
                         [](const testing::TestParamInfo<Case>& p) { return p.param.name; });

// Relay control at RCPT: every trick against a client that may not relay (refused) and one that
// may (by its address, or authenticated: accepted).
struct RelayCase {
  std::string path;
  std::string denied;   // the reply to a client that may not relay
  std::string allowed;  // the reply to one that may
};

void PrintTo(const RelayCase& c, std::ostream* os) {
  *os << testing::PrintToString(c.path);
}

// The reply to "RCPT TO:<path>" after EHLO [AUTH] MAIL.
std::string RcptReply(const std::string& path, bool may_relay, bool authenticate) {
  ServerSession::Options o = TestOptions();
  o.client_may_relay = may_relay;
  o.local_domains = {"Local.TEST", "other.test"};  // compared lower-cased
  o.auth = true;
  o.auth_plaintext = true;
  ServerSession session(o);
  session.Start();
  session.Feed(kEhlo);
  if (authenticate) {
    session.Feed(kAuthAlice);
    std::optional<AuthRequest> a = session.TakeAuthRequest();
    EXPECT_TRUE(a.has_value());
    session.OnAuthResult(true);
  }
  session.Feed(kMail);
  session.TakeOutput();
  session.Feed("RCPT TO:" + path + "\r\n");
  return session.TakeOutput();
}

class RelayTest : public testing::TestWithParam<RelayCase> {};

TEST_P(RelayTest, RefusedUnlessAllowed) {
  const RelayCase& c = GetParam();
  EXPECT_EQ(RcptReply(c.path, false, false), c.denied) << "client may not relay";
  EXPECT_EQ(RcptReply(c.path, true, false), c.allowed) << "client_may_relay";
  EXPECT_EQ(RcptReply(c.path, false, true), c.allowed) << "authenticated";
}

INSTANTIATE_TEST_SUITE_P(
    All, RelayTest,
    testing::Values(
        RelayCase{"<user@local.test>", kRcptOk, kRcptOk},
        RelayCase{"<User@LOCAL.TEST>", kRcptOk, kRcptOk},  // case does not matter
        RelayCase{"<user@other.test>", kRcptOk, kRcptOk},
        RelayCase{"<user@local.test> NOTIFY=NEVER", kRcptOk, kRcptOk},
        RelayCase{"<Postmaster>", kRcptOk, kRcptOk},  // RFC 5321 §4.1.1.3
        RelayCase{"<user@foreign.test>", RelayDenied("user@foreign.test"), kRcptOk},
        RelayCase{"<postmaster@foreign.test>", RelayDenied("postmaster@foreign.test"), kRcptOk},
        // Source routes are dropped: the final domain decides.
        RelayCase{"<@local.test:user@foreign.test>", RelayDenied("user@foreign.test"), kRcptOk},
        RelayCase{"<@local.test,@other.test:user@foreign.test>", RelayDenied("user@foreign.test"),
                  kRcptOk},
        RelayCase{"<@foreign.test:user@local.test>", kRcptOk, kRcptOk},
        // %-hack, bang paths and quoted "@" through a local domain.
        RelayCase{"<user%foreign.test@local.test>", kBadRcpt, kRcptOk},
        RelayCase{"<foreign.test!user@local.test>", kBadRcpt, kRcptOk},
        RelayCase{"<\"user@foreign.test\"@local.test>", kBadRcpt, kRcptOk},
        RelayCase{"<\"user%foreign.test\"@local.test>", kBadRcpt, kRcptOk},
        RelayCase{"<\"foreign.test!user\"@local.test>", kBadRcpt, kRcptOk},
        RelayCase{"<user%foreign.test@foreign.test>", kBadRcpt, kRcptOk},
        // A trailing dot is bad syntax for everyone (no "local.test." == "local.test").
        RelayCase{"<user@local.test.>", kBadRcpt, kBadRcpt},
        RelayCase{"<user@foreign.test@local.test>", kBadRcpt, kBadRcpt},
        // Address literals are never local.
        RelayCase{"<user@[192.0.2.1]>", RelayDenied("user@[192.0.2.1]"), kRcptOk},
        RelayCase{"<user@[IPv6:2001:db8::1]>", RelayDenied("user@[IPv6:2001:db8::1]"), kRcptOk},
        // Only the exact domain is local.
        RelayCase{"<user@sub.local.test>", RelayDenied("user@sub.local.test"), kRcptOk},
        RelayCase{"<user@local.test.foreign.test>", RelayDenied("user@local.test.foreign.test"),
                  kRcptOk},
        RelayCase{"<user@xlocal.test>", RelayDenied("user@xlocal.test"), kRcptOk},
        RelayCase{"<user@localtest>", RelayDenied("user@localtest"), kRcptOk}));

// Room for a body is reserved from the client's SIZE or, without one, from the last message on
// the connection (a campaign's are alike); a body that came smaller gives the rest back before it
// goes to the queue.
TEST(ServerSessionTest, AStoredBodyHoldsNoMoreRoomThanItNeeds) {
  ServerSession session(With([](ServerSession::Options& o) { o.max_message_size = 1 << 20; }));
  session.Start();
  std::string big;
  while (big.size() < 60000)
    big += std::string(76, 'x') + "\r\n";
  session.Feed(kEhloThenTxn + big + ".\r\n");
  std::optional<ReceivedMessage> m = session.TakeMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body, big);
  EXPECT_LE(m->body.capacity(), 2 * big.size() + 4096);
  session.OnCommitted(std::string("A1"));
  (void)session.TakeOutput();
  // The same size again, in pieces as the reactor hands them over: room for it was there from
  // the start (grown by doubling, it would have ended at 64 KB or more), and is kept.
  const std::string second = kMail + kRcpt + kData + big + ".\r\n";
  for (size_t at = 0; at < second.size(); at += 16384)
    session.Feed(std::string_view(second).substr(at, 16384));
  std::optional<ReceivedMessage> again = session.TakeMessage();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->body, big);
  EXPECT_GE(again->body.capacity(), big.size());
  EXPECT_LE(again->body.capacity(), big.size() + 512);
  session.OnCommitted(std::string("A2"));
  (void)session.TakeOutput();
  // A small one after it, and one whose SIZE said far more than came: no 60 KB buffers kept.
  for (const std::string& mail : {kMail, std::string("MAIL FROM:<a@x.test> SIZE=900000\r\n")}) {
    session.Feed(mail + kRcpt + kData + "small\r\n.\r\n");
    std::optional<ReceivedMessage> small = session.TakeMessage();
    ASSERT_TRUE(small.has_value()) << mail;
    EXPECT_EQ(small->body, "small\r\n");
    EXPECT_LT(small->body.capacity(), 4096u) << mail;
    session.OnCommitted(std::string("A3"));
    (void)session.TakeOutput();
  }
}

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

// AUTH pauses like a commit: nothing pipelined behind the credentials is answered before the
// glue's verdict.
TEST(ServerSessionTest, HoldsInputUntilAuthResult) {
  ServerSession session(With([](auto& o) {
    o.auth = true;
    o.auth_plaintext = true;
    o.client_may_relay = false;
  }));
  session.Start();
  session.Feed(kEhlo + kAuthAlice + kMail + "RCPT TO:<b@foreign");
  EXPECT_EQ(session.TakeOutput(), kGreeting + EhloReply({.auth = true}));
  EXPECT_TRUE(session.awaiting_auth());
  EXPECT_FALSE(session.awaiting_commit());
  session.Feed(".test>\r\n");
  EXPECT_EQ(session.TakeOutput(), "");
  std::optional<AuthRequest> request = session.TakeAuthRequest();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(*request, kAliceRequest);
  EXPECT_FALSE(session.TakeAuthRequest().has_value());
  EXPECT_TRUE(session.awaiting_auth());
  session.OnAuthResult(true);
  EXPECT_FALSE(session.awaiting_auth());
  EXPECT_EQ(session.TakeOutput(), kAuthOk + kMailOk + kRcptOk);  // relaying now allowed
}

// CVE-2011-0411, as the glue sees it: the plaintext behind STARTTLS, in the same read or in a
// later one before the handshake completes, is never answered.
TEST(ServerSessionTest, StartTlsDropsEverythingUntilHandshake) {
  const ServerSession::Options options = With([](auto& o) { o.starttls = true; });
  for (bool split : {false, true}) {
    SCOPED_TRACE(split ? "split" : "one chunk");
    ServerSession session(options);
    session.Start();
    session.Feed(kEhlo);
    EXPECT_EQ(session.TakeOutput(), kGreeting + EhloReply({.starttls = true}));
    if (split) {
      session.Feed("STARTTLS\r\nMAIL FR");
      session.Feed("OM:<evil@x.test>\r\n");
    } else {
      session.Feed("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
    }
    EXPECT_TRUE(session.tls_requested());
    EXPECT_EQ(session.TakeOutput(), kTlsReady);
    session.Feed("RCPT TO:<b@y.test>\r\n");  // before OnTlsStarted(): ignored
    EXPECT_EQ(session.TakeOutput(), "");
    session.OnTlsStarted(kTls);
    EXPECT_FALSE(session.tls_requested());
    session.Feed(kEhlo + kRcpt + kMail);
    EXPECT_EQ(session.TakeOutput(), EhloReply() + kNeedMail + kMailOk);
  }
}

// in_data() spans what the glue times against [server] min_data_rate: DATA from its 354 to the
// final ".", BDAT from the first chunk to the end of LAST (between chunks too), and a chunk
// being read even when it is refused. Commands, the commit wait and a refused DATA are not in it.
TEST(ServerSessionTest, InDataSpansTheDataPhase) {
  ServerSession session(TestOptions());
  session.Start();
  EXPECT_FALSE(session.in_data());
  session.Feed(kEhlo + kMail + kRcpt);
  EXPECT_FALSE(session.in_data());
  session.Feed(kData);
  EXPECT_TRUE(session.in_data());
  session.Feed("Subject: x\r\n\r\nbody\r\n.");
  EXPECT_TRUE(session.in_data());  // "." alone does not end it yet
  session.Feed("\r\n");
  EXPECT_FALSE(session.in_data());
  EXPECT_TRUE(session.awaiting_commit());
  ASSERT_TRUE(session.TakeMessage().has_value());
  session.OnCommitted(std::string("Q1"));
  EXPECT_FALSE(session.in_data());

  // BDAT: a partial first chunk, a complete one, the pause between chunks, then LAST.
  session.Feed(kMail + kRcpt + "BDAT 10\r\n12345");
  EXPECT_TRUE(session.in_data());
  session.Feed("67890");
  EXPECT_TRUE(session.in_data());  // between chunks
  session.Feed("BDAT 2 LAST\r\n\r");
  EXPECT_TRUE(session.in_data());
  session.Feed("\n");
  EXPECT_FALSE(session.in_data());
  ASSERT_TRUE(session.TakeMessage().has_value());
  session.OnCommitted(std::string("Q2"));

  // A chunk refused for want of RCPT is still read (RFC 3030 §2), and counts while it is.
  session.Feed(kMail + "BDAT 4\r\nab");
  EXPECT_TRUE(session.in_data());
  session.Feed("cd");
  EXPECT_FALSE(session.in_data());  // refused: kBroken, waiting for RSET

  // A refused DATA never starts the data phase.
  session.Feed(kRset + kMail + kData);
  EXPECT_FALSE(session.in_data());
  EXPECT_EQ(session.TakeOutput(), kGreeting + EhloReply() + kMailOk + kRcptOk + kGoAhead +
                                      "250 2.0.0 Ok: queued as Q1\r\n" + kMailOk + kRcptOk +
                                      Octets(10) + "250 2.0.0 Ok: queued as Q2\r\n" + kMailOk +
                                      "503 5.5.1 Error: need RCPT command\r\n" + kOk + kMailOk +
                                      kNoRcpts);
}

// Input before the greeting (the glue delays it): 554 instead of 220, and close.
TEST(ServerSessionTest, InputBeforeGreetingIsRefused) {
  ServerSession session(TestOptions());
  session.Feed(kEhlo);
  EXPECT_EQ(session.TakeOutput(), "");
  EXPECT_FALSE(session.closed());
  session.Start();
  EXPECT_EQ(session.TakeOutput(), "554 5.5.0 SMTP protocol violation: input before greeting\r\n");
  EXPECT_TRUE(session.closed());
  session.Feed(kMail);
  EXPECT_EQ(session.TakeOutput(), "");

  ServerSession patient(TestOptions());
  patient.Start();
  patient.Feed(kEhlo);
  EXPECT_EQ(patient.TakeOutput(), kGreeting + EhloReply());
}

// With implicit TLS the glue reports the handshake before the greeting, for the Received: line.
TEST(ServerSessionTest, ImplicitTlsInfoBeforeStart) {
  ServerSession session(With([](auto& o) {
    o.implicit_tls = true;
    o.add_received = true;
  }));
  session.SetNow(kNow);
  session.OnTlsStarted(kTls);
  EXPECT_FALSE(session.tls_requested());
  session.Start();
  session.Feed(kEhloThenTxn + "x\r\n.\r\n");
  std::optional<ReceivedMessage> m = session.TakeMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body,
            "Received: from client.test\r\n\tby mx.test (spate) with ESMTPS (TLSv1.3 "
            "TLS_AES_256_GCM_SHA384)\r\n\tfor <b@y.test>; " +
                kNowText + "\r\nx\r\n");
  EXPECT_EQ(session.TakeOutput(), kEhloThenTxnReplies);
}

// The added fields carry the time the data ended (the final "." or BDAT LAST), as the glue last
// set it, whenever the data phase began.
TEST(ServerSessionTest, AddedFieldsCarryTheTimeTheDataEnded) {
  ServerSession session(With([](auto& o) {
    o.add_received = true;
    o.add_missing_headers = true;
  }));
  const auto earlier = kNow - std::chrono::hours(25) - std::chrono::seconds(1);
  auto expected = [](int n) {
    return "Received: from client.test\r\n\tby mx.test (spate) with ESMTP\r\n\tfor <b@y.test>; " +
           kNowText + "\r\nSubject: x\r\nDate: " + kNowText + "\r\nMessage-ID: <20240102030405." +
           std::to_string(n) + "@mx.test>\r\n\r\nhi\r\n";
  };
  session.SetNow(earlier);
  session.Start();
  session.Feed(kEhloThenTxn + "Subject: x\r\n\r\nhi\r\n");
  session.SetNow(kNow);
  session.Feed(".\r\n");
  std::optional<ReceivedMessage> m = session.TakeMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body, expected(1));
  session.OnCommitted(std::string("Q1"));

  session.SetNow(earlier);
  session.Feed(kMail + kRcpt + Bdat("Subject: x\r\n\r\n"));
  session.SetNow(kNow);
  session.Feed(Bdat("hi\r\n", true));
  m = session.TakeMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->body, expected(2));
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

TEST(ServerSessionTest, TimeoutWhileAwaitingAuth) {
  ServerSession session(With([](auto& o) {
    o.auth = true;
    o.auth_plaintext = true;
  }));
  session.Start();
  session.Feed(kEhlo + kAuthAlice);
  ASSERT_TRUE(session.TakeAuthRequest().has_value());
  session.OnTimeout();
  session.OnAuthResult(true);
  EXPECT_EQ(session.TakeOutput(), kGreeting + EhloReply({.auth = true}) +
                                      "421 4.4.2 mx.test Error: timeout exceeded\r\n");
}

// Bodies are copied a run at a time straight from the fed buffers; a big one goes through in
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

  // The same through BDAT, in one 8 MiB chunk.
  feed(session, kMail + kRcpt + "BDAT " + std::to_string(body.size()) + " LAST\r\n" + body);
  m = session.TakeMessage();
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->body == body);
  session.OnCommitted(std::string("BIG2"));

  options.max_message_size = 1 << 20;
  ServerSession small(options);
  small.Start();
  feed(small, kEhloThenTxn + stuffed + ".\r\n" + kQuit);
  EXPECT_FALSE(small.TakeMessage().has_value());
  EXPECT_EQ(small.TakeOutput(), kGreeting + EhloReply({.size = 1 << 20}) + kMailOk + kRcptOk +
                                    kGoAhead + kTooBig + kBye);
}

// Random conversations, built from plausible steps (transactions by DATA and by BDAT, AUTH
// exchanges, resets) with random bodies and random noise in between, give the same outcome
// whole, byte by byte and in random splits; and no message ever appears without a 354 or a
// BDAT ... LAST.
TEST(ServerSessionTest, RandomConversationsAreSplitInvariant) {
  const std::vector<std::string> text = {"text",
                                         "\r\n",
                                         "\n",
                                         "\r",
                                         ".",
                                         "..",
                                         "\0"s,
                                         "\xc3\xa9",
                                         std::string(300, 'L'),
                                         "\r\n.\r\n",
                                         "Subject: s\r\n",
                                         "Date: d\r\n",
                                         " "};
  const std::vector<std::string> noise = {kEhlo,
                                          "HELO h\r\n",
                                          kMail,
                                          "MAIL FROM:<a@x.test> SMTPUTF8 RET=FULL\r\n",
                                          kRcpt,
                                          "RCPT TO:<c@foreign.test> NOTIFY=NEVER\r\n",
                                          "RCPT TO:<d%e@local.test>\r\n",
                                          kData,
                                          kRset,
                                          "NOOP\r\n",
                                          "BDAT 3\r\n",
                                          "BDAT 5 LAST\r\n",
                                          kAuthAlice,
                                          "AUTH LOGIN\r\n",
                                          "YWxpY2U=\r\n",
                                          "*\r\n",
                                          ".\r\n",
                                          "\n",
                                          "STARTTLS\r\n",
                                          std::string(600, 'N')};
  ServerSession::Options options = TestOptions();
  options.client_may_relay = false;
  options.local_domains = {"local.test", "y.test"};
  options.auth = true;
  options.auth_plaintext = true;
  options.max_errors = 1000;
  options.add_received = true;
  options.add_missing_headers = true;
  std::mt19937 rng(20240102);
  auto pick = [&rng](const std::vector<std::string>& from) -> const std::string& {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
  };
  auto chance = [&rng](int percent) {
    return std::uniform_int_distribution<int>(0, 99)(rng) < percent;
  };
  auto body = [&] {
    std::string b;
    const int n = std::uniform_int_distribution<int>(0, 8)(rng);
    for (int i = 0; i < n; ++i) {
      b += pick(text);
    }
    return b;
  };
  size_t total_messages = 0;
  size_t total_auths = 0;
  for (int round = 0; round < 300; ++round) {
    Case c;
    c.name = "random";
    c.options = options;
    c.options.bare_lf = round % 2 ? BareLfPolicy::kReject : BareLfPolicy::kNormalise;
    c.input = kEhlo;
    for (int step = 0; step < 8; ++step) {
      switch (std::uniform_int_distribution<int>(0, 5)(rng)) {
        case 0:
        case 1:
          c.input += kMail + kRcpt + (chance(20) ? "RCPT TO:<c@local.test>\r\n" : "") + kData +
                     body() + (chance(90) ? ".\r\n" : "");
          break;
        case 2:
        case 3: {
          c.input += kMail + kRcpt;
          const int chunks = std::uniform_int_distribution<int>(1, 3)(rng);
          for (int i = 0; i < chunks; ++i) {
            const std::string chunk = body();
            const bool last = i + 1 == chunks;
            // Now and then a size that is off by one: the framing slips, as with a broken client.
            const size_t size = chunk.size() + (chance(10) ? 1 : 0);
            c.input += "BDAT " + std::to_string(size) + (last ? " LAST" : "") + "\r\n" + chunk;
          }
          break;
        }
        case 4:
          c.input += chance(50) ? kAuthAlice : "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n";
          break;
        default:
          c.input += pick(noise);
          break;
      }
      if (chance(30)) {
        c.input += pick(noise);
      }
    }
    const Outcome whole = Converse(c, Whole);
    c.output = whole.output;
    c.messages = whole.messages;
    c.auths = whole.auths;
    c.closed = whole.closed;
    total_messages += whole.messages.size();
    total_auths += whole.auths.size();
    auto count = [](std::string_view in, std::string_view what) {
      size_t n = 0;
      for (size_t pos = 0; (pos = in.find(what, pos)) != std::string_view::npos; ++pos) {
        ++n;
      }
      return n;
    };
    EXPECT_LE(whole.messages.size(), count(whole.output, "\r\n354 ") + count(c.input, " LAST\r\n"))
        << testing::PrintToString(c.input);
    ExpectOutcome(c, Converse(c, Bytes), "byte by byte: " + testing::PrintToString(c.input));
    ExpectOutcome(c, Converse(c, [round](std::string_view s) { return RandomSplit(s, round + 1); }),
                  "random split: " + testing::PrintToString(c.input));
    if (HasFailure()) {
      return;
    }
  }
  // The generator reaches the interesting states.
  EXPECT_GT(total_messages, 300u);
  EXPECT_GT(total_auths, 100u);
}

// The body section's fast path (whole lines found by one vector scan, server_session_data.cc)
// against the line-at-a-time path: fed whole, most lines go through the first; byte by byte,
// none can. Random bodies past their header section, of lines of every length around the limit
// (998 octets and CRLF), lines starting with dots, bare CR and LF, NULs and lines cut by the end
// of the data, by DATA and by BDAT, under both bare-LF policies and a size limit some exceed,
// give the same replies and the same stored bodies either way; and an ordinary body is stored
// exactly as sent, unstuffed.
TEST(ServerSessionTest, BodyFastPathMatchesTheLineAtATimePath) {
  std::mt19937 rng(20261202);
  auto uniform = [&rng](size_t lo, size_t hi) {
    return std::uniform_int_distribution<size_t>(lo, hi)(rng);
  };
  auto line = [&](bool ordinary) {
    std::string l(uniform(0, 2) == 0 ? uniform(990, 1000) : uniform(0, 90), 'a');
    for (char& ch : l)
      ch = static_cast<char>('a' + uniform(0, 25));
    if (!ordinary) {
      switch (uniform(0, 5)) {
        case 0:
          l.insert(0, ".");
          break;
        case 1:
          l.insert(uniform(0, l.size()), "\n");
          break;
        case 2:
          l.insert(uniform(0, l.size()), "\r");
          break;
        case 3:
          l.insert(uniform(0, l.size()), "\0"s);
          break;
        case 4:
          l.insert(0, "..");
          break;
        default:
          l += "\tx";
          break;
      }
    }
    return l + "\r\n";
  };
  size_t stored = 0;
  for (int round = 0; round < 400; ++round) {
    Case c;
    c.name = "body fast path";
    c.options = TestOptions();
    c.options.add_received = round % 3 == 0;
    // Adding missing fields keeps the header section open (trace_headers.h) up to the blank
    // line: the switch from there into the fast path.
    c.options.add_missing_headers = round % 3 == 1;
    c.options.bare_lf = round % 2 ? BareLfPolicy::kReject : BareLfPolicy::kNormalise;
    c.options.max_message_size = round % 5 == 0 ? 20000 : 0;
    const bool ordinary = round % 4 == 0;
    std::string text = "Subject: fast\r\nFrom: <a@x.test>\r\n\r\n";
    const size_t lines = uniform(1, 60);
    for (size_t i = 0; i < lines; ++i)
      text += line(ordinary || uniform(0, 3) != 0);
    const bool bdat = round % 7 == 3;
    c.input = kEhlo + kMail + kRcpt;
    if (bdat) {
      c.input += "BDAT " + std::to_string(text.size()) + " LAST\r\n" + text;
    } else {
      // The data's lines as sent: stuffed (RFC 5321 §4.5.2), then the terminator.
      std::string sent;
      bool start = true;
      for (char ch : text) {
        if (start && ch == '.')
          sent += '.';
        sent += ch;
        start = ch == '\n';
      }
      c.input += kData + sent + (round % 11 == 5 ? "" : ".\r\n");
    }
    c.input += kMail;
    const Outcome whole = Converse(c, Whole);
    c.output = whole.output;
    c.messages = whole.messages;
    c.auths = whole.auths;
    c.closed = whole.closed;
    ExpectOutcome(c, Converse(c, Bytes), "byte by byte, round " + std::to_string(round));
    ExpectOutcome(c, Converse(c, [round](std::string_view in) { return RandomSplit(in, round); }),
                  "random split, round " + std::to_string(round));
    if (ordinary && !c.options.add_received && !c.options.add_missing_headers &&
        c.options.max_message_size == 0 && round % 11 != 5) {
      bool fits = true;
      for (size_t pos = 0; pos < text.size();) {
        const size_t end = text.find("\r\n", pos);
        fits = fits && end - pos + 2 <= c.options.max_text_line;
        pos = end + 2;
      }
      if (fits) {
        ASSERT_EQ(whole.messages.size(), 1u) << round;
        EXPECT_EQ(whole.messages[0].body, text) << round;
        ++stored;
      }
    }
    if (HasFailure())
      return;
  }
  EXPECT_GT(stored, 5u);  // the exact check ran
}

TEST(ReplyTest, ToStringUsesTheFirstLine) {
  EXPECT_EQ((Reply{250, "2.0.0", "Ok"}).ToString(), "250 2.0.0 Ok");
  EXPECT_EQ((Reply{550, "", "No such user\nreally"}).ToString(), "550 No such user");
  EXPECT_EQ((Reply{421, "4.4.2", ""}).ToString(), "421 4.4.2");
  EXPECT_EQ((Reply{220, "", "mx ESMTP"}).ToString(), "220 mx ESMTP");
}

}  // namespace
}  // namespace spate::smtp

namespace spate::smtp {
namespace {

// §4.1.1.1: a domain or an address literal; control octets never reach the Received: header.
TEST(ServerSessionHelloTest, ControlOctetsInTheArgumentAreRefused) {
  for (std::string_view arg : {std::string_view("a\rX-Injected: yes"), std::string_view("\r\0", 2),
                               std::string_view("host\tname"), std::string_view("x\x7f")}) {
    for (std::string_view verb : {"EHLO ", "HELO "}) {
      ServerSession session(TestOptions());
      session.Start();
      (void)session.TakeOutput();
      session.Feed(std::string(verb) + std::string(arg) + "\r\n");
      std::string out = session.TakeOutput();
      EXPECT_EQ(out.substr(0, 10), "501 5.5.4 ") << verb << arg;
      // No hello was recorded: MAIL still needs one.
      session.Feed("MAIL FROM:<a@b.test>\r\n");
      EXPECT_EQ(session.TakeOutput().substr(0, 10), "503 5.5.1 ");
    }
  }
  ServerSession session(TestOptions());
  session.Start();
  (void)session.TakeOutput();
  session.Feed("EHLO [192.0.2.1]\r\n");
  EXPECT_EQ(session.TakeOutput().substr(0, 4), "250-");
}

}  // namespace
}  // namespace spate::smtp

namespace spate::smtp {
namespace {

// Reply of a fresh session, past its greeting and EHLO, to one command line.
std::string ReplyTo(const ServerSession::Options& options, const std::string& line) {
  ServerSession session(options);
  session.Start();
  session.Feed(kEhlo);
  (void)session.TakeOutput();
  session.Feed(line + "\r\n");
  return session.TakeOutput();
}

// RFC 5321 §4.1.2 with the tolerance the parameter parser states: runs of SP between and after
// parameters.
TEST(ServerSessionParamsTest, SpacesAfterTheLastParameterAreTolerated) {
  EXPECT_EQ(ReplyTo(TestOptions(), "MAIL FROM:<a@x.test> SIZE=100   "), kMailOk);
  EXPECT_EQ(ReplyTo(TestOptions(), "MAIL FROM:<a@x.test>  SIZE=100  BODY=8BITMIME "), kMailOk);
}

// RFC 3461 §4: ENVID and ORCPT are xtext whose decoding is printable US-ASCII; a "+XX" that
// decodes to a control octet is as bad as a raw one.
TEST(ServerSessionParamsTest, XtextThatDecodesToAControlOctetIsRefused) {
  EXPECT_EQ(ReplyTo(TestOptions(), "MAIL FROM:<a@x.test> ENVID=ok+2Bfine"), kMailOk);
  EXPECT_EQ(ReplyTo(TestOptions(), "MAIL FROM:<a@x.test> ENVID=a+0Ab"),
            "501 5.5.4 Bad ENVID parameter\r\n");
  EXPECT_EQ(ReplyTo(TestOptions(), "MAIL FROM:<a@x.test> ENVID=a+7Fb"),
            "501 5.5.4 Bad ENVID parameter\r\n");
}

// RFC 4954 §5: MAIL's AUTH= is "<>" or xtext; this server checks it and trusts none.
TEST(ServerSessionParamsTest, MailAuthParameterIsCheckedAndDropped) {
  auto auth = With([](auto& o) {
    o.auth = true;
    o.auth_plaintext = true;
  });
  EXPECT_EQ(ReplyTo(auth, "MAIL FROM:<a@x.test> AUTH=<>"), kMailOk);
  EXPECT_EQ(ReplyTo(auth, "MAIL FROM:<a@x.test> AUTH=alice+40x.test"), kMailOk);
  for (const char* bad : {"AUTH", "AUTH=+4", "AUTH=a+0Db", "AUTH=<> AUTH=<>"}) {
    EXPECT_EQ(ReplyTo(auth, std::string("MAIL FROM:<a@x.test> ") + bad),
              "501 5.5.4 Bad AUTH parameter\r\n")
        << bad;
  }
}

TEST(ServerSessionTest, StartTwiceGreetsOnce) {
  ServerSession session(TestOptions());
  session.Start();
  session.Start();
  EXPECT_EQ(session.TakeOutput(), kGreeting);
}

TEST(SmtpErrcTest, EachErrorSaysWhatFailed) {
  EXPECT_EQ(make_error_code(Errc::kMalformedReply).message(), "malformed SMTP reply");
  EXPECT_EQ(make_error_code(Errc::kReplyTooLong).message(), "SMTP reply too long");
  EXPECT_EQ(make_error_code(Errc::kUnexpectedReply).message(), "unexpected SMTP reply");
  EXPECT_EQ(make_error_code(Errc::kBadAddress).message(), "bad address syntax");
  EXPECT_EQ(make_error_code(Errc::kAddressTooLong).message(), "address too long");
  EXPECT_EQ(make_error_code(Errc::kAddressNotAscii).message(), "non-ASCII address");
  EXPECT_EQ(std::error_code(99, ErrorCategory()).message(), "unknown smtp error 99");
  EXPECT_STREQ(ErrorCategory().name(), "spate.smtp");
}

// The dates of Received:, Date: and Message-IDs (core/smtp/date.h), against the C library's
// strftime over gmtime_r, for the edges (epoch, leap days, a century year) and 20,000 seeded
// random seconds up to 2255 (system_clock counts nanoseconds in 64 bits: it ends in 2262).
TEST(DateTest, FormatDateAndCompactTimeMatchStrftime) {
  using std::chrono::seconds;
  using std::chrono::system_clock;
  auto expect = [](int64_t secs) {
    const std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    ASSERT_NE(gmtime_r(&t, &tm), nullptr);
    char want[64];
    char want_compact[32];
    std::strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    std::strftime(want_compact, sizeof want_compact, "%Y%m%d%H%M%S", &tm);
    const system_clock::time_point at{seconds(secs)};
    EXPECT_EQ(FormatDate(at), want) << secs;
    EXPECT_EQ(CompactTime(at), want_compact) << secs;
    // Within the second, the same text.
    EXPECT_EQ(FormatDate(at + std::chrono::milliseconds(999)), want) << secs;
  };
  for (int64_t secs :
       {int64_t{0}, int64_t{951782400} /* 2000-02-29 */, int64_t{1709164800} /* 2024-02-29 */,
        int64_t{1709251199}, int64_t{4107542400} /* 2100-03-01 */, int64_t{9000000000}}) {
    expect(secs);
  }
  std::mt19937_64 rng(17);
  std::uniform_int_distribution<int64_t> any(0, 9000000000);
  for (int i = 0; i < 20000; ++i) {
    expect(any(rng));
  }
}

}  // namespace
}  // namespace spate::smtp
