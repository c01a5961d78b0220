// tests/unit/client_session_test.cc
//
// ClientSession against scripted servers. Each case is a conversation (with its own Options): a
// list of steps (server bytes, Submit, Quit, Abort, the caller's TLS handshake done or failed),
// each followed by the exact bytes the client must have written and the exact events it must
// have emitted. Every case runs with the server's bytes fed whole,
// byte by byte and in seeded random splits; the results must be identical. Invariants checked
// on every step: one result per recipient before its TransactionDone, nothing after Closed,
// idle() and closed() agreeing with the events.
#include "delivery/client_session.h"

#include <functional>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace spate::delivery {
namespace {

struct Split {
  std::string name;
  int seed = 0;  // 0: whole; -1: byte by byte; >0: random chunks of 1..16 bytes
};

std::vector<std::string_view> Cut(std::string_view in, int seed) {
  std::vector<std::string_view> pieces;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  while (!in.empty()) {
    size_t n = in.size();
    if (seed < 0) {
      n = 1;
    } else if (seed > 0) {
      n = std::uniform_int_distribution<size_t>(1, std::min<size_t>(16, in.size()))(rng);
    }
    pieces.push_back(in.substr(0, n));
    in.remove_prefix(n);
  }
  return pieces;
}

std::string Render(const smtp::Reply& r) {
  std::string s = std::to_string(r.code);
  if (!r.enhanced.empty()) {
    s += " " + r.enhanced;
  }
  if (!r.text.empty()) {
    s += " ";
    for (char c : r.text) {
      s += c == '\n' ? '|' : c;
    }
  }
  return s;
}

struct EventRenderer {
  std::string operator()(const RecipientResult& e) const {
    return "rcpt " + std::to_string(e.transaction_id) + "#" + std::to_string(e.recipient_index) +
           " " + Render(e.reply);
  }
  std::string operator()(const TransactionDone& e) const {
    return "done " + std::to_string(e.transaction_id);
  }
  std::string operator()(const ReadyForTransaction&) const { return "ready"; }
  std::string operator()(const ReadyForNext&) const { return "next"; }
  std::string operator()(const Closed& e) const { return "closed " + Render(e.reply); }
  std::string operator()(const StartTls&) const { return "starttls"; }
};

enum class Op { kServer, kSubmit, kQuit, kAbort, kTlsEstablished, kFail };

struct Step {
  Op op = Op::kServer;
  std::string input;                // kServer: the server's bytes; kAbort: the reason
  smtp::Reply reply;                // kFail: the Closed reason
  Envelope envelope;                // kSubmit
  std::string body;                 // kSubmit; lives as long as the test parameter
  uint32_t id = 0;                  // kSubmit: the expected transaction id
  std::string out;                  // the client's bytes expected after the step
  std::vector<std::string> events;  // expected after the step, rendered
  std::function<void(const ClientSession&)> check;  // more assertions after the step
};

Step Server(std::string in, std::string out, std::vector<std::string> events = {}) {
  Step s;
  s.input = std::move(in);
  s.out = std::move(out);
  s.events = std::move(events);
  return s;
}

Step Submit(Envelope envelope, std::string body, uint32_t id, std::string out,
            std::vector<std::string> events = {}) {
  Step s;
  s.op = Op::kSubmit;
  s.envelope = std::move(envelope);
  s.body = std::move(body);
  s.id = id;
  s.out = std::move(out);
  s.events = std::move(events);
  return s;
}

Step Quit(std::string out = "QUIT\r\n") {
  Step s;
  s.op = Op::kQuit;
  s.out = std::move(out);
  return s;
}

Step Abort(std::string why, std::vector<std::string> events) {
  Step s;
  s.op = Op::kAbort;
  s.input = std::move(why);
  s.events = std::move(events);
  return s;
}

// The caller's TLS handshake after StartTls is done.
Step TlsEstablished(std::string out, std::vector<std::string> events = {}) {
  Step s;
  s.op = Op::kTlsEstablished;
  s.out = std::move(out);
  s.events = std::move(events);
  return s;
}

Step Fail(smtp::Reply reply, std::vector<std::string> events) {
  Step s;
  s.op = Op::kFail;
  s.reply = std::move(reply);
  s.events = std::move(events);
  return s;
}

Step Check(std::function<void(const ClientSession&)> check) {
  Step s = Server("", "");
  s.check = std::move(check);
  return s;
}

ClientSession::Options Plain() {
  return ClientSession::Options{.helo_name = "client.example"};
}

struct Case {
  std::string name;
  std::vector<Step> steps;
  ClientSession::Options options = Plain();
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}
void PrintTo(const Split& s, std::ostream* os) {
  *os << s.name;
}

constexpr char kGreeting[] = "220 mx.example.com ESMTP\r\n";
constexpr char kEhlo[] = "EHLO client.example\r\n";
constexpr char kEhloAll[] =
    "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";
constexpr char kEhloPipelining[] = "250-mx.example.com\r\n250 PIPELINING\r\n";
constexpr char kEhloLockStep[] = "250-mx.example.com\r\n250-SIZE\r\n250 ENHANCEDSTATUSCODES\r\n";

constexpr char kEhloStartTls[] = "250-mx.example.com\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
constexpr char kEhloStartTlsSize10[] = "250-mx.example.com\r\n250-SIZE 10\r\n250 STARTTLS\r\n";

// Options::pipeline_next: the next transaction behind the end of data.
ClientSession::Options PipelineNext() {
  ClientSession::Options o = Plain();
  o.pipeline_next = true;
  return o;
}

constexpr char kMailBob[] = "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n";
constexpr char kMailCarol[] =
    "MAIL FROM:<alice@example.org>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n";

ClientSession::Options StartTlsOptions() {
  return ClientSession::Options{
      .helo_name = "client.example", .starttls = true, .peer = "mx.example.com[192.0.2.1]:25"};
}

ClientSession::Options RequireTlsOptions() {
  ClientSession::Options o = StartTlsOptions();
  o.require_tls = true;
  return o;
}

std::vector<Step> Handshake(std::string ehlo_reply) {
  return {Server(kGreeting, kEhlo), Server(std::move(ehlo_reply), "", {"ready"})};
}

std::vector<Step> Concat(std::vector<std::vector<Step>> parts) {
  std::vector<Step> all;
  for (auto& part : parts) {
    for (auto& step : part) {
      all.push_back(std::move(step));
    }
  }
  return all;
}

Envelope Env(std::vector<std::string> rcpts, std::string from = "alice@example.org") {
  Envelope e;
  e.mail_from = std::move(from);
  e.rcpt_to = std::move(rcpts);
  return e;
}

const std::vector<std::string> kThree = {"bob@a.example", "carol@b.example", "dave@c.example"};

std::vector<Case> Cases() {
  std::vector<Case> cases;

  cases.push_back({"EhloCapabilitiesAndQuit",
                   Concat({Handshake(kEhloAll),
                           {Check([](const ClientSession& s) {
                              EXPECT_TRUE(s.pipelining());
                              EXPECT_EQ(s.server_max_size(), 10240000u);
                            }),
                            Quit(), Server("221 2.0.0 Bye\r\n", "", {"closed 221 2.0.0 Bye"})}})});

  cases.push_back(
      {"MultiLineGreeting",
       Concat({{Server("220-mx.example.com ESMTP\r\n220-no UCE\r\n220 really\r\n", kEhlo)},
               {Server(kEhloPipelining, "", {"ready"})}})});

  cases.push_back(
      {"PipelinedThreeRecipients",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env(kThree), "Hello\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nRCPT TO:<dave@c.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n"
                       "550 5.1.1 <bob@a.example>: Recipient address rejected\r\n"
                       "450 4.2.0 <carol@b.example>: Greylisted\r\n"
                       "250 2.1.5 Ok\r\n"
                       "354 End data with <CR><LF>.<CR><LF>\r\n",
                       "Hello\r\n.\r\n",
                       {"rcpt 1#0 550 5.1.1 <bob@a.example>: Recipient address rejected",
                        "rcpt 1#1 450 4.2.0 <carol@b.example>: Greylisted"}),
                Server("250 2.0.0 Ok: queued as 4BQ\r\n", "",
                       {"rcpt 1#2 250 2.0.0 Ok: queued as 4BQ", "done 1", "ready"})}})});

  cases.push_back(
      {"LockStepWithoutPipelining",
       Concat({Handshake(kEhloLockStep),
               {Check([](const ClientSession& s) {
                 EXPECT_FALSE(s.pipelining());
                 EXPECT_EQ(s.server_max_size(), 0u);
               })},
               {[] {
                 Envelope e = Env(kThree);
                 e.size_hint = 2048;
                 e.body_8bit = true;  // not offered: no BODY=
                 return Submit(e, "Hi\r\n", 1, "MAIL FROM:<alice@example.org> SIZE=2048\r\n");
               }()},
               {Server("250 2.1.0 Ok\r\n", "RCPT TO:<bob@a.example>\r\n"),
                Server("550 5.1.1 no such user\r\n", "RCPT TO:<carol@b.example>\r\n",
                       {"rcpt 1#0 550 5.1.1 no such user"}),
                Server("250 2.1.5 Ok\r\n", "RCPT TO:<dave@c.example>\r\n"),
                Server("250 2.1.5 Ok\r\n", "DATA\r\n"), Server("354 go ahead\r\n", "Hi\r\n.\r\n"),
                Server("250 2.0.0 queued\r\n", "",
                       {"rcpt 1#1 250 2.0.0 queued", "rcpt 1#2 250 2.0.0 queued", "done 1",
                        "ready"})}})});

  cases.push_back(
      {"LockStepNoAcceptedRecipientSkipsData",
       Concat({Handshake(kEhloLockStep),
               {Submit(Env({"x@a.example", "y@a.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\n"),
                Server("250 2.1.0 Ok\r\n", "RCPT TO:<x@a.example>\r\n"),
                Server("550 5.1.1 no\r\n", "RCPT TO:<y@a.example>\r\n", {"rcpt 1#0 550 5.1.1 no"}),
                Server("551 5.1.6 moved\r\n", "", {"rcpt 1#1 551 5.1.6 moved", "done 1", "ready"}),
                Submit(Env({"z@a.example"}), "Hi\r\n", 2, "RSET\r\n"),
                Server("250 2.0.0 Ok\r\n", "MAIL FROM:<alice@example.org>\r\n"),
                Server("250 2.1.0 Ok\r\n", "RCPT TO:<z@a.example>\r\n"),
                Server("250 2.1.5 Ok\r\n", "DATA\r\n"), Server("354 go\r\n", "Hi\r\n.\r\n"),
                Server("250 2.0.0 queued\r\n", "",
                       {"rcpt 2#0 250 2.0.0 queued", "done 2", "ready"})}})});

  cases.push_back(
      {"EhloRefusedFallsBackToHelo",
       {Server(kGreeting, kEhlo),
        Server("502 5.5.1 Error: command not recognized\r\n", "HELO client.example\r\n"),
        Server("250 mx.example.com\r\n", "", {"ready"}), Check([](const ClientSession& s) {
          EXPECT_FALSE(s.pipelining());
          EXPECT_EQ(s.server_max_size(), 0u);
        }),
        [] {
          Envelope e = Env({"bob@a.example"});
          e.size_hint = 100;
          e.body_8bit = true;
          return Submit(e, "x\r\n", 1, "MAIL FROM:<alice@example.org>\r\n");
        }(),
        Server("250 Ok\r\n", "RCPT TO:<bob@a.example>\r\n"), Server("250 Ok\r\n", "DATA\r\n"),
        Server("354 go\r\n", "x\r\n.\r\n"),
        Server("250 Ok\r\n", "", {"rcpt 1#0 250 Ok", "done 1", "ready"})}});

  cases.push_back(
      {"HeloRefusedQuits",
       {Server(kGreeting, kEhlo), Server("500 unknown command\r\n", "HELO client.example\r\n"),
        Server("501 5.5.4 go away\r\n", "QUIT\r\n", {"closed 501 5.5.4 go away"})}});

  cases.push_back({"EhloTransientFailureQuits",
                   {Server(kGreeting, kEhlo),
                    Server("451 4.3.0 try later\r\n", "QUIT\r\n", {"closed 451 4.3.0 try later"}),
                    Server("221 Bye\r\n", "")}});

  cases.push_back({"Greeting554",
                   {Server("554 5.7.1 No SMTP service here\r\n", "QUIT\r\n",
                           {"closed 554 5.7.1 No SMTP service here"}),
                    Server("221 2.0.0 Bye\r\n", ""),
                    Check([](const ClientSession& s) { EXPECT_TRUE(s.closed()); })}});

  cases.push_back({"Greeting421ClosesWithoutQuit",
                   {Server("421 4.3.2 Service not available\r\n", "",
                           {"closed 421 4.3.2 Service not available"})}});

  cases.push_back(
      {"MailRefusedPipelined",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example", "carol@b.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nDATA\r\n"),
                Server("553 5.7.1 <alice@example.org>: Sender address rejected\r\n", "",
                       {"rcpt 1#0 553 5.7.1 <alice@example.org>: Sender address rejected",
                        "rcpt 1#1 553 5.7.1 <alice@example.org>: Sender address rejected"}),
                // The RCPT and DATA replies are still consumed before the session is idle.
                Server("503 5.5.1 Error: need MAIL command\r\n"
                       "503 5.5.1 Error: need MAIL command\r\n",
                       ""),
                Server("554 5.5.1 Error: no valid recipients\r\n", "", {"done 1", "ready"}),
                Submit(Env({"dave@c.example"}), "Hi\r\n", 2,
                       "RSET\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@c.example>\r\n"
                       "DATA\r\n"),
                Server("250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "Hi\r\n.\r\n"),
                Server("250 2.0.0 queued\r\n", "",
                       {"rcpt 2#0 250 2.0.0 queued", "done 2", "ready"})}})});

  cases.push_back(
      {"MailRefusedLockStep",
       Concat({Handshake(kEhloLockStep),
               {Submit(Env({"bob@a.example", "carol@b.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\n"),
                Server("550 5.7.1 go away\r\n", "",
                       {"rcpt 1#0 550 5.7.1 go away", "rcpt 1#1 550 5.7.1 go away", "done 1",
                        "ready"}),
                Submit(Env({"dave@c.example"}), "Hi\r\n", 2, "RSET\r\n"),
                // A refused RSET changes nothing: MAIL follows.
                Server("502 5.5.2 Error: command not recognized\r\n",
                       "MAIL FROM:<alice@example.org>\r\n"),
                Server("250 2.1.0 Ok\r\n", "RCPT TO:<dave@c.example>\r\n"),
                Server("250 2.1.5 Ok\r\n", "DATA\r\n"), Server("354 go\r\n", "Hi\r\n.\r\n"),
                Server("250 2.0.0 queued\r\n", "",
                       {"rcpt 2#0 250 2.0.0 queued", "done 2", "ready"})}})});

  cases.push_back(
      {"DataAcceptedWithoutRecipientsSendsOnlyTheDot",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example", "carol@b.example"}), "Never sent\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n550 5.1.1 no\r\n450 4.7.1 later\r\n354 go\r\n", ".\r\n",
                       {"rcpt 1#0 550 5.1.1 no", "rcpt 1#1 450 4.7.1 later"}),
                Server("554 5.5.1 Error: no valid recipients\r\n", "", {"done 1", "ready"}),
                Submit(Env({"dave@c.example"}), "Hi\r\n", 2,
                       "RSET\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@c.example>\r\n"
                       "DATA\r\n")}})});

  cases.push_back(
      {"DataRefused",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example", "carol@b.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n"
                       "451 4.3.0 Error: queue file write error\r\n",
                       "",
                       {"rcpt 1#1 550 5.1.1 no", "rcpt 1#0 451 4.3.0 Error: queue file write error",
                        "done 1", "ready"}),
                Submit(Env({"dave@c.example"}), "Hi\r\n", 2,
                       "RSET\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@c.example>\r\n"
                       "DATA\r\n")}})});

  cases.push_back(
      {"TwoTransactionsOnOneConnection",
       Concat(
           {Handshake(kEhloPipelining),
            {Submit(Env({"bob@a.example"}), "One\r\n", 1,
                    "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
             Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n"),
             // A failed end of data needs no RSET (RFC 5321 §4.1.1.4).
             Server("552 5.3.4 too big\r\n", "", {"rcpt 1#0 552 5.3.4 too big", "done 1", "ready"}),
             Submit(Env({"carol@b.example"}, ""), "Two\r\n", 2,
                    "MAIL FROM:<>\r\nRCPT TO:<carol@b.example>\r\nDATA\r\n"),
             Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "Two\r\n.\r\n"),
             Server("250 2.0.0 Ok: queued as 2\r\n", "",
                    {"rcpt 2#0 250 2.0.0 Ok: queued as 2", "done 2", "ready"}),
             Quit(), Server("221 2.0.0 Bye\r\n", "", {"closed 221 2.0.0 Bye"})}})});

  cases.push_back(
      {"ServiceClosingMidTransaction",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env(kThree), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nRCPT TO:<dave@c.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n"
                       "421 4.3.0 mx.example.com shutting down\r\n",
                       "",
                       {"rcpt 1#1 550 5.1.1 no", "rcpt 1#0 421 4.3.0 mx.example.com shutting down",
                        "rcpt 1#2 421 4.3.0 mx.example.com shutting down", "done 1",
                        "closed 421 4.3.0 mx.example.com shutting down"}),
                Server("554 5.5.1 late\r\n", "")}})});

  cases.push_back(
      {"ServiceClosingAtEndOfData",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Server("250 Ok\r\n250 Ok\r\n354 go\r\n", "Hi\r\n.\r\n"),
                Server("421 4.4.2 timeout\r\n", "",
                       {"rcpt 1#0 421 4.4.2 timeout", "done 1", "closed 421 4.4.2 timeout"})}})});

  cases.push_back(
      {"ServiceClosingWhileIdle",
       Concat({Handshake(kEhloPipelining),
               {Server("421 4.4.2 mx.example.com Error: timeout exceeded\r\n", "",
                       {"closed 421 4.4.2 mx.example.com Error: timeout exceeded"})}})});

  cases.push_back(
      {"AbortMidTransaction",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example", "carol@b.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n550 5.1.1 no\r\n", "", {"rcpt 1#0 550 5.1.1 no"}),
                Abort("connection reset by peer", {"rcpt 1#1 421 4.4.2 connection reset by peer",
                                                   "done 1", "closed 0 connection reset by peer"}),
                Abort("again", {}), Server("250 2.1.5 Ok\r\n354 go\r\n", ""), Quit("")}})});

  cases.push_back(
      {"AbortDuringBody",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Server("250 Ok\r\n250 Ok\r\n354 go\r\n", "Hi\r\n.\r\n"),
                Abort("timeout after END-OF-MESSAGE",
                      {"rcpt 1#0 421 4.4.2 timeout after END-OF-MESSAGE", "done 1",
                       "closed 0 timeout after END-OF-MESSAGE"})}})});

  cases.push_back(
      {"AbortBeforeGreeting",
       {Abort("connect timeout", {"closed 0 connect timeout"}), Server(kGreeting, "")}});

  cases.push_back(
      {"DotStuffedBody",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}),
                       ".starts with a dot\r\nline\r\n..two\r\n.\r\nlast line without CRLF", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Server("250 Ok\r\n250 Ok\r\n354 go\r\n",
                       "..starts with a dot\r\nline\r\n...two\r\n..\r\nlast line without "
                       "CRLF\r\n.\r\n"),
                Server("250 Ok\r\n", "", {"rcpt 1#0 250 Ok", "done 1", "ready"})}})});

  cases.push_back(
      {"EmptyBody",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Server("250 Ok\r\n250 Ok\r\n354 go\r\n", ".\r\n"),
                Server("250 Ok\r\n", "", {"rcpt 1#0 250 Ok", "done 1", "ready"})}})});

  cases.push_back({"SizeAndBodyParamsWhenOffered",
                   Concat({Handshake(kEhloAll), {[] {
                             Envelope e = Env({"bob@a.example"});
                             e.size_hint = 12345;
                             e.body_8bit = true;
                             return Submit(
                                 e, "x\r\n", 1,
                                 "MAIL FROM:<alice@example.org> SIZE=12345 BODY=8BITMIME\r\n"
                                 "RCPT TO:<bob@a.example>\r\nDATA\r\n");
                           }()}})});

  cases.push_back({"NoParamsWhenNotOffered",
                   Concat({Handshake(kEhloPipelining), {[] {
                             Envelope e = Env({"bob@a.example"}, "");
                             e.size_hint = 12345;
                             e.body_8bit = true;
                             return Submit(e, "x\r\n", 1,
                                           "MAIL FROM:<>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n");
                           }()}})});

  cases.push_back({"KeywordsAreCaseInsensitive",
                   Concat({Handshake("250-mx.example.com\r\n250-pipelining\r\n250-Size 5000\r\n"
                                     "250 8bitmime\r\n"),
                           {Check([](const ClientSession& s) {
                              EXPECT_TRUE(s.pipelining());
                              EXPECT_EQ(s.server_max_size(), 5000u);
                            }),
                            [] {
                              Envelope e = Env({"bob@a.example"});
                              e.size_hint = 10;
                              e.body_8bit = true;
                              return Submit(
                                  e, "x\r\n", 1,
                                  "MAIL FROM:<alice@example.org> SIZE=10 BODY=8BITMIME\r\n"
                                  "RCPT TO:<bob@a.example>\r\nDATA\r\n");
                            }()}})});

  cases.push_back({"EmptyRecipientList",
                   Concat({Handshake(kEhloPipelining),
                           {Submit(Env({}), "x\r\n", 1, "", {"done 1", "ready"}),
                            Submit(Env({"bob@a.example"}), "x\r\n", 2,
                                   "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                                   "DATA\r\n")}})});

  cases.push_back(
      {"MalformedReplyAborts",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example", "carol@b.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\n"
                       "RCPT TO:<carol@b.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n550 no\r\nwhat?\r\n354 go\r\n", "",
                       {"rcpt 1#0 550 no", "rcpt 1#1 421 4.4.2 protocol error: malformed reply",
                        "done 1", "closed 0 protocol error: malformed reply"})}})});

  cases.push_back(
      {"MalformedGreetingAborts",
       {Server("220-mx\r\n221 mixed\r\n", "", {"closed 0 protocol error: malformed reply"})}});

  cases.push_back({"ReplyTooLongAborts",
                   {Server("220 " + std::string(5000, 'x') + "\r\n", "",
                           {"closed 0 protocol error: reply too long"})}});

  cases.push_back(
      {"UnexpectedReplyAborts",
       Concat({Handshake(kEhloPipelining),
               {Server("250 2.0.0 Ok\r\n", "",
                       {"closed 0 protocol error: reply with no command outstanding: 250 2.0.0 "
                        "Ok"})}})});

  cases.push_back(
      {"IntermediateReplyToRcptAborts",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Server("250 Ok\r\n354 go\r\n", "",
                       {"rcpt 1#0 421 4.4.2 protocol error: unexpected intermediate reply: 354 go",
                        "done 1",
                        "closed 0 protocol error: unexpected intermediate reply: 354 go"})}})});

  cases.push_back(
      {"PositiveReplyToDataAborts",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Server("250 Ok\r\n250 Ok\r\n250 Ok\r\n", "",
                       {"rcpt 1#0 421 4.4.2 protocol error: 2xx reply to DATA: 250 Ok", "done 1",
                        "closed 0 protocol error: 2xx reply to DATA: 250 Ok"})}})});

  // STARTTLS (RFC 3207).
  cases.push_back(
      {"StartTlsWhenOfferedThenEhloAgainInsideTls",
       {Server(kGreeting, kEhlo),
        // SIZE 10 and STARTTLS in the clear; PIPELINING only inside TLS.
        Server(kEhloStartTlsSize10, "STARTTLS\r\n"),
        Check([](const ClientSession& s) { EXPECT_FALSE(s.tls_active()); }),
        Server("220 2.0.0 Ready to start TLS\r\n", "", {"starttls"}),
        Check([](const ClientSession& s) { EXPECT_FALSE(s.tls_active()); }), TlsEstablished(kEhlo),
        // A server that (wrongly) offers STARTTLS again inside TLS is not asked twice.
        Server("250-mx.example.com\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "", {"ready"}),
        Check([](const ClientSession& s) {
          EXPECT_TRUE(s.tls_active());
          EXPECT_TRUE(s.pipelining());
          EXPECT_EQ(s.server_max_size(), 0u) << "the SIZE said in the clear was forgotten";
        }),
        // 13 octets, over the SIZE said in the clear: sent, and pipelined.
        Submit(Env({"bob@a.example"}), "0123456789x\r\n", 1,
               "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n")},
       StartTlsOptions()});

  cases.push_back(
      {"CapabilitiesSaidInTheClearAreForgottenInsideTls",
       {Server(kGreeting, kEhlo),
        Server("250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
               "250 STARTTLS\r\n",
               "STARTTLS\r\n"),
        Server("220 go ahead\r\n", "", {"starttls"}), TlsEstablished(kEhlo),
        // Forgotten as soon as TLS is up, before the new EHLO is answered (RFC 3207 §4.2).
        Check([](const ClientSession& s) {
          EXPECT_FALSE(s.pipelining());
          EXPECT_EQ(s.server_max_size(), 0u);
        }),
        Server(kEhloLockStep, "", {"ready"}),
        Check([](const ClientSession& s) { EXPECT_FALSE(s.pipelining()); }),
        [] {
          Envelope e = Env({"bob@a.example", "carol@b.example"});
          e.body_8bit = true;  // 8BITMIME was only said in the clear: no BODY=
          return Submit(e, "Hi\r\n", 1, "MAIL FROM:<alice@example.org>\r\n");
        }(),
        Server("250 2.1.0 Ok\r\n", "RCPT TO:<bob@a.example>\r\n")},
       StartTlsOptions()});

  cases.push_back(
      {"StartTlsIsNotSentWhenNotAskedFor",
       Concat({Handshake(kEhloStartTls),
               {Submit(Env({"bob@a.example"}), "Hi\r\n", 1, "MAIL FROM:<alice@example.org>\r\n"),
                Check([](const ClientSession& s) { EXPECT_FALSE(s.tls_active()); })}}),
       Plain()});

  cases.push_back(
      {"StartTlsIsNotSentWhenNotOffered",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "Hi\r\n", 1,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n"),
                Check([](const ClientSession& s) { EXPECT_FALSE(s.tls_active()); })}}),
       StartTlsOptions()});

  // RFC 3207 §6: what came in the clear behind the 220 is never a reply, not even one that would
  // answer the EHLO said inside TLS.
  cases.push_back({"BytesBehindThe220AreNotTakenAsReplies",
                   {Server(kGreeting, kEhlo), Server(kEhloStartTls, "STARTTLS\r\n"),
                    Server("220 go\r\n250 injected\r\n", "", {"starttls"}),
                    Server("250-injected too\r\n250 PIPELINING\r\n", ""), TlsEstablished(kEhlo),
                    Server(kEhloLockStep, "", {"ready"}), Check([](const ClientSession& s) {
                      EXPECT_TRUE(s.tls_active());
                      EXPECT_FALSE(s.pipelining()) << "the injected PIPELINING was taken";
                    })},
                   StartTlsOptions()});

  cases.push_back(
      {"RequiredTlsNotOfferedClosesWith474AndQuits",
       {Server(kGreeting, kEhlo),
        Server(kEhloPipelining, "QUIT\r\n",
               {"closed 451 4.7.4 TLS is required, but mx.example.com[192.0.2.1]:25 does not "
                "offer STARTTLS"}),
        Server("221 2.0.0 Bye\r\n", ""), Quit("")},
       RequireTlsOptions()});

  cases.push_back(
      {"RequiredTlsRefusedClosesWith474AndQuits",
       {Server(kGreeting, kEhlo), Server(kEhloStartTls, "STARTTLS\r\n"),
        Server("454 4.7.0 TLS not available due to temporary reason\r\n", "QUIT\r\n",
               {"closed 451 4.7.4 TLS is required, but mx.example.com[192.0.2.1]:25 refused "
                "STARTTLS: 454 4.7.0 TLS not available due to temporary reason"}),
        Server("221 2.0.0 Bye\r\n", "")},
       RequireTlsOptions()});

  cases.push_back(
      {"OpportunisticTlsRefusedGoesOnInTheClear",
       {Server(kGreeting, kEhlo),
        Server("250-mx.example.com\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "STARTTLS\r\n"),
        Server("454 4.7.0 TLS not available due to temporary reason\r\n", "", {"ready"}),
        Check([](const ClientSession& s) {
          EXPECT_FALSE(s.tls_active());
          EXPECT_TRUE(s.pipelining()) << "the EHLO said in the clear still holds in the clear";
        }),
        Submit(Env({"bob@a.example"}), "Hi\r\n", 1,
               "MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n")},
       StartTlsOptions()});

  cases.push_back({"ServiceClosingInReplyToStartTlsCloses",
                   {Server(kGreeting, kEhlo), Server(kEhloStartTls, "STARTTLS\r\n"),
                    Server("421 4.3.2 shutting down\r\n", "", {"closed 421 4.3.2 shutting down"}),
                    TlsEstablished("")},
                   StartTlsOptions()});

  cases.push_back(
      {"RequiredTlsAfterHeloFallbackClosesWith474",
       {Server(kGreeting, kEhlo),
        Server("502 5.5.1 Error: command not recognized\r\n", "HELO client.example\r\n"),
        Server("250 mx.example.com\r\n", "QUIT\r\n",
               {"closed 451 4.7.4 TLS is required, but mx.example.com[192.0.2.1]:25 does not "
                "offer STARTTLS"})},
       RequireTlsOptions()});

  // The caller's handshake failed: the session ends with the caller's reason, says nothing more
  // in the clear, and a late OnTlsEstablished() changes nothing.
  cases.push_back(
      {"FailedHandshakeClosesWithTheGivenReply",
       {Server(kGreeting, kEhlo), Server(kEhloStartTls, "STARTTLS\r\n"),
        Server("220 go\r\n", "", {"starttls"}),
        Fail(smtp::Reply{451, "4.7.5", "TLS handshake failed: certificate verify failed"},
             {"closed 451 4.7.5 TLS handshake failed: certificate verify failed"}),
        TlsEstablished(""), Server("250 late\r\n", "")},
       RequireTlsOptions()});

  // RFC 2920 §3.1: message content may open a group, so the next MAIL/RCPT/DATA go right
  // behind the end of data: the end-of-data reply and the next transaction's replies come in
  // one flight, one round trip per message.
  cases.push_back(
      {"PipelineNextBehindEndOfData",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Check([](const ClientSession& s) {
                  EXPECT_TRUE(s.can_submit_next());
                  EXPECT_FALSE(s.body_borrowed(1));  // in the output: the caller may let it go
                }),
                // No RSET: the end of data ends the server's transaction (RFC 5321 §4.1.1.4).
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Check([](const ClientSession& s) {
                  EXPECT_FALSE(s.can_submit_next());  // at most one behind
                  EXPECT_TRUE(s.body_borrowed(2));
                }),
                Server("250 2.0.0 one queued\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
                       "Two\r\n.\r\n", {"rcpt 1#0 250 2.0.0 one queued", "done 1", "next"}),
                Server("250 2.0.0 two queued\r\n", "",
                       {"rcpt 2#0 250 2.0.0 two queued", "done 2", "ready"}),
                Quit(), Server("221 Bye\r\n", "", {"closed 221 Bye"})}})});

  // Without a next transaction the session goes idle at the end-of-data reply, as before.
  cases.push_back(
      {"PipelineNextNoneSubmitted",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Server("250 2.0.0 Ok\r\n", "", {"rcpt 1#0 250 2.0.0 Ok", "done 1", "ready"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol)}})});

  // A refused end of data is the first message's outcome only; the second goes on.
  cases.push_back(
      {"PipelineNextFirstRefusedSecondDelivered",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Server("554 5.7.1 spam\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
                       "Two\r\n.\r\n", {"rcpt 1#0 554 5.7.1 spam", "done 1", "next"}),
                Server("250 2.0.0 Ok\r\n", "", {"rcpt 2#0 250 2.0.0 Ok", "done 2", "ready"})}})});

  // The next MAIL refused: its recipients fail, the session goes idle, and the one after that
  // starts with RSET (its MAIL never took).
  cases.push_back(
      {"PipelineNextMailRefused",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Server("250 2.0.0 Ok\r\n452 4.3.1 insufficient system storage\r\n"
                       "503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
                       "",
                       {"rcpt 1#0 250 2.0.0 Ok", "done 1",
                        "rcpt 2#0 452 4.3.1 insufficient system storage", "done 2", "ready"}),
                Submit(Env({"dave@c.example"}), "Three\r\n", 3,
                       "RSET\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@c.example>\r\n"
                       "DATA\r\n")}})});

  // 421 to the end of data (RFC 5321 §3.8): the outcome of both transactions in flight.
  cases.push_back(
      {"PipelineNext421AtEndOfData",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example", "dave@c.example"}), "Two\r\n", 2,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<carol@b.example>\r\n"
                       "RCPT TO:<dave@c.example>\r\nDATA\r\n"),
                Server("421 4.3.2 shutting down\r\n", "",
                       {"rcpt 1#0 421 4.3.2 shutting down", "done 1",
                        "rcpt 2#0 421 4.3.2 shutting down", "rcpt 2#1 421 4.3.2 shutting down",
                        "done 2", "closed 421 4.3.2 shutting down"})}})});

  // The connection breaks with two transactions in flight: both get the synthetic 421.
  cases.push_back(
      {"PipelineNextAborted",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Abort("connection lost", {"rcpt 1#0 421 4.4.2 connection lost", "done 1",
                                          "rcpt 2#0 421 4.4.2 connection lost", "done 2",
                                          "closed 0 connection lost"})}})});

  // A next message refused before a byte is sent (SMTPUTF8 the server lacks) settles at once,
  // and another may still go behind the end of data.
  cases.push_back(
      {"PipelineNextRefusedBeforeSending",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                [] {
                  Envelope e = Env({"carol@b.example"});
                  e.smtputf8 = true;
                  return Submit(
                      e, "Two\r\n", 2, "",
                      {"rcpt 2#0 550 5.6.7 SMTPUTF8 is required but the server does not offer it",
                       "done 2", "next"});
                }(),
                Submit(Env({"carol@b.example"}), "Three\r\n", 3, kMailCarol),
                Server("250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
                       "Three\r\n.\r\n", {"rcpt 1#0 250 2.0.0 Ok", "done 1", "next"})}})});

  // Haraka 3.3 refuses every command behind an end of data with 503 (and Postfix's pipelining
  // check with 554 5.5.0 "... synchronization"): that is nobody's outcome. The same commands go
  // again once the end of data is answered, and nothing more goes behind data on this session.
  cases.push_back(
      {"PipelineNextRefusedByTheServerIsSentAgain",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Server("250 2.0.0 Ok\r\n"
                       "503 Bad sequence of commands - pipelined after end of DATA\r\n"
                       "503 Bad sequence of commands - pipelined after end of DATA\r\n"
                       "503 Bad sequence of commands - pipelined after end of DATA\r\n",
                       kMailCarol, {"rcpt 1#0 250 2.0.0 Ok", "done 1"}),
                Check([](const ClientSession& s) {
                  EXPECT_TRUE(s.pipeline_next_refused());
                  EXPECT_TRUE(s.body_borrowed(2));
                }),
                // Its body, and no ReadyForNext any more.
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "Two\r\n.\r\n"),
                Server("250 2.0.0 Ok\r\n", "", {"rcpt 2#0 250 2.0.0 Ok", "done 2", "ready"}),
                Submit(Env({"dave@c.example"}), "Three\r\n", 3,
                       "MAIL FROM:<alice@example.org>\r\nRCPT TO:<dave@c.example>\r\nDATA\r\n"),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "Three\r\n.\r\n")}})});

  // Haraka 3.3 drops the commands it holds behind an end of data, a line half arrived among
  // them; the rest of that line, come later, gets 500. That is nobody's outcome either: the
  // MAIL goes again, as after a 503.
  cases.push_back(
      {"PipelineNextHalfALineAnswered500IsSentAgain",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Server("250 2.0.0 Ok\r\n500 Unrecognized command\r\n503 Use MAIL before RCPT\r\n"
                       "503 MAIL required first\r\n",
                       kMailCarol, {"rcpt 1#0 250 2.0.0 Ok", "done 1"}),
                Check([](const ClientSession& s) { EXPECT_TRUE(s.pipeline_next_refused()); }),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "Two\r\n.\r\n"),
                Server("250 2.0.0 Ok\r\n", "", {"rcpt 2#0 250 2.0.0 Ok", "done 2", "ready"})}})});

  // A refusal of the sender itself is the outcome, behind data as anywhere.
  cases.push_back(
      {"PipelineNextSenderRefusedIsTheOutcome",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Server("250 2.0.0 Ok\r\n550 5.7.1 sender blocked\r\n503 5.5.1 no MAIL\r\n"
                       "503 5.5.1 no RCPT\r\n",
                       "",
                       {"rcpt 1#0 250 2.0.0 Ok", "done 1", "rcpt 2#0 550 5.7.1 sender blocked",
                        "done 2", "ready"}),
                Check([](const ClientSession& s) { EXPECT_FALSE(s.pipeline_next_refused()); })}})});

  // Postfix's check disconnects after its 554: the connection's end is then the outcome (a
  // 4xx: tried again), never the 554.
  cases.push_back(
      {"PipelineNextSynchronizationErrorThenClose",
       Concat({Handshake(kEhloPipelining),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob),
                Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
                Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
                Server("250 2.0.0 Ok\r\n554 5.5.0 Error: SMTP protocol synchronization\r\n", "",
                       {"rcpt 1#0 250 2.0.0 Ok", "done 1"}),
                Abort("connection closed by peer",
                      {"rcpt 2#0 421 4.4.2 connection closed by peer", "done 2",
                       "closed 0 connection closed by peer"})}})});

  // Without PIPELINING there is nothing to put behind the end of data: lock-step as before.
  cases.push_back(
      {"PipelineNextNeedsPipelining",
       Concat({Handshake(kEhloLockStep),
               {Submit(Env({"bob@a.example"}), "One\r\n", 1, "MAIL FROM:<alice@example.org>\r\n"),
                Server("250 Ok\r\n", "RCPT TO:<bob@a.example>\r\n"),
                Server("250 Ok\r\n", "DATA\r\n"), Server("354 go\r\n", "One\r\n.\r\n"),
                Check([](const ClientSession& s) { EXPECT_FALSE(s.can_submit_next()); }),
                Server("250 Ok\r\n", "", {"rcpt 1#0 250 Ok", "done 1", "ready"})}})});
  // What the connection waits for at each point, which picks its timeout (RFC 5321 §4.5.3.2:
  // the greeting's and the end of data's are their own): the oldest command on the wire, the
  // end of data still while the next transaction's commands are behind it.
  using A = ClientSession::Awaiting;
  auto awaiting = [](A want) {
    return Check([want](const ClientSession& s) { EXPECT_EQ(s.awaiting(), want); });
  };
  cases.push_back(
      {"PipelineNextAwaitingNamesTheReplyWaitedFor",
       {awaiting(A::kGreeting), Server(kGreeting, kEhlo), awaiting(A::kReply),
        Server(kEhloPipelining, "", {"ready"}), awaiting(A::kNothing),
        Submit(Env({"bob@a.example"}), "One\r\n", 1, kMailBob), awaiting(A::kReply),
        Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "One\r\n.\r\n", {"next"}),
        awaiting(A::kEndOfData), Submit(Env({"carol@b.example"}), "Two\r\n", 2, kMailCarol),
        awaiting(A::kEndOfData),
        Server("250 2.0.0 Ok\r\n", "", {"rcpt 1#0 250 2.0.0 Ok", "done 1"}), awaiting(A::kReply),
        Server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", "Two\r\n.\r\n", {"next"}),
        awaiting(A::kEndOfData),
        Server("250 2.0.0 Ok\r\n", "", {"rcpt 2#0 250 2.0.0 Ok", "done 2", "ready"}),
        awaiting(A::kNothing)}});
  for (Case& c : cases) {
    if (c.name.rfind("PipelineNext", 0) == 0)
      c.options = PipelineNext();
  }
  return cases;
}

const std::vector<Split>& Splits() {
  static const std::vector<Split> kSplits = {{"Whole", 0},   {"Bytewise", -1}, {"Random1", 1},
                                             {"Random2", 2}, {"Random3", 3},   {"Random4", 4},
                                             {"Random5", 5}};
  return kSplits;
}

class ClientSessionTest : public ::testing::TestWithParam<std::tuple<Case, Split>> {};

TEST_P(ClientSessionTest, Conversation) {
  const auto& [c, split] = GetParam();
  ClientSession session(c.options);

  std::map<uint32_t, std::vector<int>> results;  // per open transaction: results per recipient
  bool closed = false;
  bool ready = false;
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& step = c.steps[i];
    SCOPED_TRACE("step " + std::to_string(i));
    const bool closed_before = closed;
    switch (step.op) {
      case Op::kServer:
        for (std::string_view piece : Cut(step.input, split.seed)) {
          session.OnBytes(piece);
        }
        break;
      case Op::kSubmit: {
        ASSERT_TRUE(session.idle() || session.can_submit_next());
        ready = false;
        const uint32_t id = session.Submit(step.envelope, step.body);
        EXPECT_EQ(id, step.id);
        results[id].assign(step.envelope.rcpt_to.size(), 0);
        break;
      }
      case Op::kQuit:
        ready = false;
        session.Quit();
        break;
      case Op::kAbort:
        session.Abort(step.input);
        break;
      case Op::kTlsEstablished:
        session.OnTlsEstablished();
        break;
      case Op::kFail:
        session.Fail(step.reply);
        break;
    }
    EXPECT_EQ(session.TakeOutput(), step.out);
    std::vector<std::string> events;
    for (const Event& e : session.TakeEvents()) {
      events.push_back(std::visit(EventRenderer{}, e));
      EXPECT_FALSE(closed) << "event after Closed: " << events.back();
      if (const auto* r = std::get_if<RecipientResult>(&e)) {
        auto it = results.find(r->transaction_id);
        ASSERT_NE(it, results.end()) << "result for a finished transaction";
        ASSERT_LT(r->recipient_index, it->second.size());
        EXPECT_EQ(++it->second[r->recipient_index], 1) << "second result for a recipient";
      } else if (const auto* d = std::get_if<TransactionDone>(&e)) {
        auto it = results.find(d->transaction_id);
        ASSERT_NE(it, results.end());
        for (int n : it->second) {
          EXPECT_EQ(n, 1) << "TransactionDone before every recipient had its result";
        }
        results.erase(it);
      } else if (std::holds_alternative<ReadyForTransaction>(e)) {
        ready = true;
      } else if (std::holds_alternative<ReadyForNext>(e)) {
        EXPECT_FALSE(session.idle());
      } else if (std::holds_alternative<Closed>(e)) {
        closed = true;
        ready = false;
        EXPECT_TRUE(results.empty()) << "Closed with a transaction in flight";
      }
    }
    EXPECT_EQ(events, step.events);
    if (closed_before) {
      EXPECT_TRUE(step.out.empty()) << "the test expects output after Closed";
    }
    EXPECT_EQ(session.closed(), closed);
    EXPECT_EQ(session.idle(), ready);
    if (step.check) {
      step.check(session);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Scripted, ClientSessionTest,
                         ::testing::Combine(::testing::ValuesIn(Cases()),
                                            ::testing::ValuesIn(Splits())),
                         [](const ::testing::TestParamInfo<std::tuple<Case, Split>>& param_info) {
                           return std::get<0>(param_info.param).name + "_" +
                                  std::get<1>(param_info.param).name;
                         });

// Lock-step without PIPELINING, checked while the reply is still arriving: not one byte of
// the next command may be written before the reply to the previous one is complete.
TEST(ClientSessionLockStepTest, NextCommandOnlyAfterLastByteOfReply) {
  ClientSession session(ClientSession::Options{"client.example"});
  session.OnBytes(kGreeting);
  session.OnBytes(kEhloLockStep);
  session.TakeOutput();
  session.TakeEvents();
  const std::string body = "Hi\r\n";
  session.Submit(Env({"bob@a.example", "carol@b.example"}), body);
  EXPECT_EQ(session.TakeOutput(), "MAIL FROM:<alice@example.org>\r\n");
  const std::vector<std::pair<std::string, std::string>> script = {
      {"250-2.1.0 Sender\r\n250 2.1.0 Ok\r\n", "RCPT TO:<bob@a.example>\r\n"},
      {"250 2.1.5 Ok\r\n", "RCPT TO:<carol@b.example>\r\n"},
      {"250 2.1.5 Ok\r\n", "DATA\r\n"},
      {"354 go\r\n", "Hi\r\n.\r\n"},
  };
  for (const auto& [reply, command] : script) {
    for (size_t i = 0; i + 1 < reply.size(); ++i) {
      session.OnBytes(reply.substr(i, 1));
      ASSERT_EQ(session.TakeOutput(), "") << "sent before the reply was complete: " << reply;
    }
    session.OnBytes(reply.substr(reply.size() - 1));
    EXPECT_EQ(session.TakeOutput(), command);
  }
}

}  // namespace
}  // namespace spate::delivery

namespace spate::delivery {
namespace {

// Drives a session to idle against a server whose EHLO reply is `ehlo`.
ClientSession ReadySession(std::string_view ehlo) {
  ClientSession s(ClientSession::Options{"client.test"});
  s.OnBytes("220 mx.test ESMTP\r\n");
  EXPECT_EQ(s.TakeOutput(), "EHLO client.test\r\n");
  s.OnBytes(ehlo);
  (void)s.TakeEvents();
  EXPECT_TRUE(s.idle());
  return s;
}

// RFC 6531 §3.4: SMTPUTF8 travels with the message when the server offers it.
TEST(ClientSessionSmtpUtf8Test, SentAsMailParameterWhenOffered) {
  ClientSession s = ReadySession("250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");
  Envelope env;
  env.mail_from = "pelé@src.test";
  env.rcpt_to = {"用户@例子.test"};
  env.smtputf8 = true;
  s.Submit(env, "Subject: x\r\n\r\nhi\r\n");
  EXPECT_EQ(s.TakeOutput(),
            "MAIL FROM:<pelé@src.test> SMTPUTF8\r\nRCPT TO:<用户@例子.test>\r\nDATA\r\n");
}

// Without SMTPUTF8 at the server, nothing is sent and every recipient fails with 5.6.7.
TEST(ClientSessionSmtpUtf8Test, RecipientsFailWhenTheServerLacksIt) {
  ClientSession s = ReadySession("250-mx.test\r\n250 PIPELINING\r\n");
  Envelope env;
  env.mail_from = "a@src.test";
  env.rcpt_to = {"pelé@dest.test", "b@dest.test"};
  env.smtputf8 = true;
  uint32_t id = s.Submit(env, "x\r\n");
  EXPECT_EQ(s.TakeOutput(), "");
  std::vector<Event> events = s.TakeEvents();
  ASSERT_EQ(events.size(), 4u);
  for (int i = 0; i < 2; ++i) {
    const auto& r = std::get<RecipientResult>(events[i]);
    EXPECT_EQ(r.transaction_id, id);
    EXPECT_EQ(r.reply.code, 550);
    EXPECT_EQ(r.reply.enhanced, "5.6.7");
  }
  EXPECT_TRUE(std::holds_alternative<TransactionDone>(events[2]));
  EXPECT_TRUE(std::holds_alternative<ReadyForTransaction>(events[3]));
  // The connection stays usable for mail that needs no SMTPUTF8, with no RSET first.
  env.smtputf8 = false;
  env.rcpt_to = {"b@dest.test"};
  s.Submit(env, "x\r\n");
  EXPECT_EQ(s.TakeOutput(), "MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");
}

// RFC 1870 §6.1: a message larger than the SIZE the server announced is not sent; its
// recipients fail at once with 552 5.3.4, and the connection goes on.
TEST(ClientSessionSizeTest, AMessageOverTheServersSizeFailsAtOnce) {
  ClientSession s = ReadySession("250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
  EXPECT_EQ(s.server_max_size(), 10u);
  Envelope env;
  env.mail_from = "a@src.test";
  env.rcpt_to = {"b@dest.test"};
  s.Submit(env, "0123456789x\r\n");  // 13 octets
  EXPECT_EQ(s.TakeOutput(), "");
  std::vector<Event> events = s.TakeEvents();
  ASSERT_GE(events.size(), 1u);
  const auto& r = std::get<RecipientResult>(events[0]);
  EXPECT_EQ(r.reply.code, 552);
  EXPECT_EQ(r.reply.enhanced, "5.3.4");
  EXPECT_TRUE(s.idle());
  s.Submit(env, "small\r\n");  // 7 octets: sent
  EXPECT_EQ(s.TakeOutput(), "MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");
  s.OnBytes("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n");
  (void)s.TakeOutput();
  s.OnBytes("250 2.0.0 Ok\r\n");
  (void)s.TakeEvents();
  ASSERT_TRUE(s.idle());
  // The size the engine gives (the message as it goes out) is what counts.
  env.size_hint = 11;
  s.Submit(env, "small\r\n");
  EXPECT_EQ(s.TakeOutput(), "");
}

// RFC 6710 §4: a priority goes on to a server that offers MT-PRIORITY (whatever its policy);
// to one that does not, and for priority 0, the MAIL command says nothing of it.
TEST(ClientSessionMtPriorityTest, PassedOnOnlyToAServerThatOffersIt) {
  ClientSession s = ReadySession("250-mx.test\r\n250-PIPELINING\r\n250 MT-PRIORITY MIXER\r\n");
  Envelope env;
  env.mail_from = "a@src.test";
  env.rcpt_to = {"b@dest.test"};
  env.priority = -9;
  s.Submit(env, "x\r\n");
  EXPECT_EQ(s.TakeOutput(),
            "MAIL FROM:<a@src.test> MT-PRIORITY=-9\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");
  s.OnBytes("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n");
  (void)s.TakeOutput();
  s.OnBytes("250 2.0.0 Ok\r\n");
  (void)s.TakeEvents();
  ASSERT_TRUE(s.idle());
  env.priority = 7;
  s.Submit(env, "x\r\n");
  EXPECT_EQ(s.TakeOutput(),
            "MAIL FROM:<a@src.test> MT-PRIORITY=7\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");

  ClientSession plain = ReadySession("250-mx.test\r\n250 PIPELINING\r\n");
  plain.Submit(env, "x\r\n");
  EXPECT_EQ(plain.TakeOutput(), "MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");
  ClientSession offered = ReadySession("250-mx.test\r\n250-PIPELINING\r\n250 MT-PRIORITY\r\n");
  env.priority = 0;
  offered.Submit(env, "x\r\n");
  EXPECT_EQ(offered.TakeOutput(), "MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");
}

// A message that does not need it never carries it, even when the server offers it.
TEST(ClientSessionSmtpUtf8Test, NotSentForAsciiMessages) {
  ClientSession s = ReadySession("250-mx.test\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n");
  Envelope env;
  env.mail_from = "a@src.test";
  env.rcpt_to = {"b@dest.test"};
  s.Submit(env, "x\r\n");
  EXPECT_EQ(s.TakeOutput(), "MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n");
}

}  // namespace
}  // namespace spate::delivery

namespace spate::delivery {
namespace {

// RFC 5321 §4.1.1.1: EHLO lines are "keyword [params]"; blanks a server leaves at the end of a
// line are not part of the keyword or its parameter.
TEST(ClientSessionEhloTest, TrailingBlanksOnAKeywordLineAreIgnored) {
  ClientSession s =
      ReadySession("250-mx.test\r\n250-PIPELINING\t\r\n250-SIZE 5000 \r\n250 8BITMIME\r\n");
  EXPECT_TRUE(s.pipelining());
  EXPECT_EQ(s.server_max_size(), 5000u);
  Envelope env;
  env.mail_from = "a@src.test";
  env.rcpt_to = {"b@dest.test", "c@dest.test"};
  env.size_hint = 3;
  s.Submit(env, "x\r\n");
  // PIPELINING was understood: the whole group goes out at once, SIZE declared (RFC 1870).
  EXPECT_EQ(s.TakeOutput(),
            "MAIL FROM:<a@src.test> SIZE=3\r\nRCPT TO:<b@dest.test>\r\nRCPT TO:<c@dest.test>\r\n"
            "DATA\r\n");
}

// A reply line that is not "ddd[ -]text" ends the conversation: every recipient waiting for an
// answer is told why, and the session closes (its caller defers them).
TEST(ClientSessionReplyTest, MalformedReplyClosesWithTheReason) {
  ClientSession s = ReadySession("250-mx.test\r\n250 PIPELINING\r\n");
  Envelope env;
  env.mail_from = "a@src.test";
  env.rcpt_to = {"b@dest.test"};
  uint32_t id = s.Submit(env, "x\r\n");
  (void)s.TakeOutput();
  s.OnBytes("25O 2.1.0 Ok\r\n");
  EXPECT_TRUE(s.closed());
  std::vector<Event> events = s.TakeEvents();
  ASSERT_FALSE(events.empty());
  bool told = false;
  for (const Event& e : events) {
    if (const auto* r = std::get_if<RecipientResult>(&e)) {
      EXPECT_EQ(r->transaction_id, id);
      EXPECT_EQ(r->reply.code / 100, 4) << "a broken conversation is not the recipient's fault";
      EXPECT_NE(r->reply.text.find("malformed reply"), std::string::npos) << r->reply.text;
      told = true;
    }
  }
  EXPECT_TRUE(told);
  EXPECT_TRUE(std::holds_alternative<Closed>(events.back()));
}

}  // namespace
}  // namespace spate::delivery
