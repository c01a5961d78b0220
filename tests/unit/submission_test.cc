// The submission glue's hand-over to the spool keeps every field the spool must keep, and its
// per-client connection count and AUTH failure count hold across shards.
//
// Component tests (SubmissionServerTest): a SubmissionServer on a reactor the test turns itself,
// with a ManualClock, real loopback clients (port 0, the bound port read back) and a fake store
// that holds every message until the test says whether it is durable. Nothing sleeps: the test
// turns the loop until what it waits for has happened, with a real-time bound as a safety net.
#include "core/server/submission.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <dirent.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/clock.h"
#include "core/connection.h"
#include "core/reactor.h"
#include "core/smtp/header.h"
#include "queue/errc.h"

namespace spate::server {
namespace {

using namespace std::chrono_literals;

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
  queue::NewMessage m = ToSpoolMessage(std::move(r), "pm@x.test");
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
  queue::NewMessage m = ToSpoolMessage(std::move(r), "pm@x.test");
  EXPECT_TRUE(m.dsn.empty());
  EXPECT_EQ(m.ret, 1);
  EXPECT_EQ(m.mail_from, "");  // the null sender stays null
}

// RFC 5321 §4.1.1.3, §4.5.1: "<postmaster>" without a domain, in any case, is stored as the
// configured postmaster; "postmaster@domain" is an address like any other.
TEST(ToSpoolMessageTest, TheBarePostmasterBecomesTheConfiguredMailbox) {
  smtp::ReceivedMessage r;
  r.rcpt_to = {"Postmaster", "a@x.test", "postmaster@y.test", "POSTMASTER"};
  queue::NewMessage m = ToSpoolMessage(std::move(r), "pm@ops.test");
  EXPECT_EQ(m.rcpt_to, (std::vector<std::string>{"pm@ops.test", "a@x.test", "postmaster@y.test",
                                                 "pm@ops.test"}));
}

// [server] campaign_header: the first such header of the message, unfolded and trimmed, kept
// as the campaign; a value made for a metric label (printable, no spaces, bounded).
TEST(ToSpoolMessageTest, TheCampaignHeaderNamesTheMessagesCampaign) {
  auto campaign_of = [](std::string body, std::string_view header = "X-Campaign") {
    smtp::ReceivedMessage r;
    r.rcpt_to = {"a@x.test"};
    r.body = std::move(body);
    return ToSpoolMessage(std::move(r), "pm@ops.test", header).campaign;
  };
  EXPECT_EQ(campaign_of("Subject: hi\r\nX-Campaign: spring-sale\r\n\r\nbody\r\n"), "spring-sale");
  EXPECT_EQ(campaign_of("x-campaign:   spring  \r\n\r\n"), "spring") << "any case, trimmed";
  EXPECT_EQ(campaign_of("X-Campaign: spring\r\n\tsale\r\nX-Campaign: other\r\n\r\n"), "springsale")
      << "folded lines are one value; the first field wins; blanks are no label";
  EXPECT_EQ(campaign_of("Subject: hi\r\n\r\nX-Campaign: in-the-body\r\n"), "")
      << "only the header section counts";
  EXPECT_EQ(campaign_of("X-Campaign: caf\xc3\xa9\x01ok\r\n\r\n"), "cafok");
  EXPECT_EQ(campaign_of("X-Campaign: " + std::string(500, 'c') + "\r\n\r\n").size(), kMaxCampaign);
  EXPECT_EQ(campaign_of("X-Campaign: spring\r\n\r\n", ""), "") << "campaign_header off";
  EXPECT_EQ(campaign_of("X-Mailing: m1\r\n\r\n", "X-Mailing"), "m1");
}

// RFC 6710 MT-PRIORITY: the one the session honoured wins, an explicit 0 included; without one
// the campaign's default ([campaigns."NAME"] priority) applies, by its exact name; else 0.
TEST(ToSpoolMessageTest, TheClientsPriorityWinsOverItsCampaignsDefault) {
  const CampaignPriorities defaults = {{"spring-sale", -3}, {"alerts", 8}};
  auto priority_of = [&](std::string body, std::optional<int8_t> asked) {
    smtp::ReceivedMessage r;
    r.rcpt_to = {"a@x.test"};
    r.body = std::move(body);
    r.priority = asked;
    return int{ToSpoolMessage(std::move(r), "pm@ops.test", "X-Campaign", defaults).priority};
  };
  const std::string sale = "X-Campaign: spring-sale\r\n\r\nbody\r\n";
  EXPECT_EQ(priority_of(sale, std::nullopt), -3);
  EXPECT_EQ(priority_of("X-Campaign: alerts\r\n\r\n", std::nullopt), 8);
  EXPECT_EQ(priority_of(sale, 5), 5);
  EXPECT_EQ(priority_of(sale, 0), 0) << "an explicit normal priority is the client's word too";
  EXPECT_EQ(priority_of(sale, -9), -9);
  EXPECT_EQ(priority_of("X-Campaign: Spring-Sale\r\n\r\n", std::nullopt), 0) << "exact name";
  EXPECT_EQ(priority_of("X-Campaign: other\r\n\r\n", std::nullopt), 0);
  EXPECT_EQ(priority_of("Subject: no campaign\r\n\r\n", std::nullopt), 0);
  EXPECT_EQ(priority_of("Subject: no campaign\r\n\r\n", 2), 2);
  smtp::ReceivedMessage r;
  r.rcpt_to = {"a@x.test"};
  r.body = sale;
  EXPECT_EQ(ToSpoolMessage(std::move(r), "pm@ops.test", "X-Campaign").priority, 0)
      << "no defaults configured";
}

TEST(HeaderValueTest, FindsTheFirstFieldOfANameInTheHeaderSectionOnly) {
  const std::string m =
      "Received: from a\r\n by b\r\nSubject: one\r\n two\r\nsubject: again\r\n"
      "Empty:\r\n\r\nSubject: body\r\n";
  EXPECT_EQ(smtp::HeaderValue(m, "subject"), "one two");
  EXPECT_EQ(smtp::HeaderValue(m, "RECEIVED"), "from a by b");
  EXPECT_EQ(smtp::HeaderValue(m, "Empty"), "");
  EXPECT_EQ(smtp::HeaderValue(m, "Missing"), "");
  EXPECT_EQ(smtp::HeaderValue("Subject : spaced\r\n\r\n", "Subject"), "spaced");
  EXPECT_EQ(smtp::HeaderValue("Subject: lf only\nX: y\n\n", "X"), "y");
  EXPECT_EQ(smtp::HeaderValue("", "X"), "");
  EXPECT_EQ(smtp::HeaderValue("no colon line\r\nX: after\r\n", "X"), "after");
  // Bounded: a header past max_scan is not looked for.
  EXPECT_EQ(smtp::HeaderValue("A: " + std::string(100, 'a') + "\r\nX: late\r\n", "X", 50), "");
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

// ---------------------------------------------------------------------------------------------
// SubmissionServer on a reactor turned by the test.

// A real-time bound on every wait: a safety net that a passing test never reaches.
constexpr auto kBound = 10s;

// Holds every message until the test completes it, as the spool's commit thread would: from
// another thread, with an id (durable) or an error (nothing stored).
class FakeStore final : public MessageStore {
 public:
  void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) override {
    held_.push_back({std::move(message), std::move(done)});
  }

  size_t held() const { return held_.size(); }

  smtp::Intake intake() const override { return intake_.load(); }
  void SetIntake(smtp::Intake intake) { intake_.store(intake); }

  // Completes the oldest held message on a thread of its own, and waits for that thread.
  void Complete(Result<queue::MessageId> outcome) {
    ASSERT_FALSE(held_.empty());
    Held h = std::move(held_.front());
    held_.pop_front();
    std::thread commit([&h, &outcome] { h.done(outcome, std::move(h.message)); });
    commit.join();
  }

 private:
  struct Held {
    queue::NewMessage message;
    queue::Spool::AcceptDone done;
  };
  std::deque<Held> held_;
  std::atomic<smtp::Intake> intake_{smtp::Intake::kOpen};
};

// One SMTP client on a blocking loopback socket, read without blocking between loop turns.
class Client {
 public:
  explicit Client(uint16_t port) : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // No Nagle: a command sent while the server holds an earlier segment unacknowledged goes
    // out at once, not at the server's delayed ACK.
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Completes against the listen backlog, before the server accepts.
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { Close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  void Send(std::string_view bytes) {
    ASSERT_EQ(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

  // The client goes away.
  void Close() {
    if (fd_ >= 0)
      close(fd_);
    fd_ = -1;
  }

  // Moves what the kernel holds for this client into its buffer.
  void Drain() {
    char buf[4096];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        eof_ = true;
      return;
    }
  }

  // The length of the first whole reply in the buffer (RFC 5321 §4.2: "ddd-" lines, then the
  // last, "ddd " or "ddd"), or 0.
  size_t ReplyLength() const {
    size_t start = 0;
    for (;;) {
      size_t end = in_.find("\r\n", start);
      if (end == std::string::npos)
        return 0;
      if (end - start < 4 || in_[start + 3] != '-')
        return end + 2;
      start = end + 2;
    }
  }

  std::string TakeReply() {
    std::string reply = in_.substr(0, ReplyLength());
    in_.erase(0, reply.size());
    return reply;
  }

  const std::string& unread() const { return in_; }
  bool eof() const { return eof_; }

 private:
  int fd_;
  bool connected_ = false;
  std::string in_;
  bool eof_ = false;
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool SameEndpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  const auto& x = reinterpret_cast<const sockaddr_in&>(a);
  const auto& y = reinterpret_cast<const sockaddr_in&>(b);
  return a.ss_family == AF_INET && b.ss_family == AF_INET && x.sin_port == y.sin_port &&
         x.sin_addr.s_addr == y.sin_addr.s_addr;
}

// What the client sent that the server has not read yet: the receive queue of the server's end
// of the connection, found among this process's sockets by its addresses. -1 before the server
// has accepted it.
int UnreadByServer(const Client& client) {
  sockaddr_storage local{};
  sockaddr_storage peer{};
  socklen_t len = sizeof local;
  getsockname(client.fd(), reinterpret_cast<sockaddr*>(&local), &len);
  len = sizeof peer;
  getpeername(client.fd(), reinterpret_cast<sockaddr*>(&peer), &len);
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr)
    return -1;
  int unread = -1;
  while (dirent* e = readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == client.fd() || fd == dirfd(dir))
      continue;
    sockaddr_storage their_local{};
    sockaddr_storage their_peer{};
    len = sizeof their_local;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&their_local), &len) != 0)
      continue;
    len = sizeof their_peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&their_peer), &len) != 0)
      continue;
    if (SameEndpoint(their_local, peer) && SameEndpoint(their_peer, local)) {
      int n = 0;
      if (ioctl(fd, SIOCINQ, &n) == 0)
        unread = n;
      break;
    }
  }
  closedir(dir);
  return unread;
}

class SubmissionServerTest : public ::testing::Test {
 protected:
  struct Handed {
    queue::MessageId id;
    queue::NewMessage message;
  };

  void SetUp() override {
    auto r = Reactor::Create(256, &clock_);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    reactor_ = std::move(r).value();
    options_.hostname = "mx.test";
    options_.local_domains = {"b.test"};
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown();
      EXPECT_TRUE(RunUntil([&] { return reactor_->pending_ops() == 1; }))
          << "operations still in the ring after shutdown: " << reactor_->pending_ops();
      server_.reset();
    }
  }

  // The server as shard 0 of `shard_count`, listening on 127.0.0.1, port 0.
  void StartServer(ShardId shard_count = 1) {
    socklen_t len = 0;
    Result<sockaddr_storage> addr = ParseEndpoint("127.0.0.1:0", &len);
    ASSERT_TRUE(addr.has_value());
    Result<int> fd = Listen(*addr, len, /*reuse_port=*/false);
    ASSERT_TRUE(fd.has_value()) << fd.error().message();
    port_ = static_cast<uint16_t>(LocalPort(*fd));
    server_ =
        std::make_unique<SubmissionServer>(*reactor_, 0, shard_count, options_, store_, stats_, *fd,
                                           [this](queue::MessageId id, queue::NewMessage&& m) {
                                             std::lock_guard<std::mutex> lock(handed_mu_);
                                             handed_.push_back({id, std::move(m)});
                                           });
    server_->Start();
  }

  // Turns the loop until `done()`, or the real-time bound; returns done().
  bool RunUntil(const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + kBound;
    while (!done() && std::chrono::steady_clock::now() < end)
      reactor_->RunOnce(clock_.Now() + 10ms);
    return done();
  }

  // The next whole reply the client gets ("" if the server closed first).
  std::string ReadReply(Client& c) {
    RunUntil([&] {
      c.Drain();
      return c.ReplyLength() > 0 || c.eof();
    });
    return c.TakeReply();
  }

  // Whether the server closes the connection, with nothing more said.
  bool ClosedByServer(Client& c) {
    RunUntil([&] {
      c.Drain();
      return c.eof();
    });
    return c.eof() && c.unread().empty();
  }

  // Turns the loop a few times without waiting: whatever the server would send at this point
  // is in the client's socket by then. Then nothing may have come.
  void ExpectNothingMore(Client& c) {
    for (int i = 0; i < 5; ++i)
      reactor_->RunOnce(clock_.Now());
    c.Drain();
    EXPECT_EQ(c.unread(), "");
    EXPECT_FALSE(c.eof());
  }

  // Sends one command and returns the reply.
  std::string Say(Client& c, std::string_view command) {
    c.Send(command);
    return ReadReply(c);
  }

  // Greeting, EHLO, MAIL, two RCPT and DATA, each answered as it should be; the message text
  // is the caller's to send.
  void BeginMessage(Client& c) {
    ASSERT_EQ(ReadReply(c).rfind("220 mx.test ", 0), 0u);
    ASSERT_EQ(Say(c, "EHLO client.test\r\n").rfind("250-mx.test", 0), 0u);
    ASSERT_EQ(Say(c, "MAIL FROM:<sender@a.test>\r\n").substr(0, 4), "250 ");
    ASSERT_EQ(Say(c, "RCPT TO:<one@b.test>\r\n").substr(0, 4), "250 ");
    ASSERT_EQ(Say(c, "RCPT TO:<two@b.test>\r\n").substr(0, 4), "250 ");
    ASSERT_EQ(Say(c, "DATA\r\n").substr(0, 4), "354 ");
  }

  // Turns the loop until the store holds `n` messages.
  bool StoreHolds(size_t n) {
    return RunUntil([&] { return store_.held() == n; });
  }

  std::vector<Handed> handed() {
    std::lock_guard<std::mutex> lock(handed_mu_);
    return handed_;
  }

  static constexpr char kText[] =
      "From: sender@a.test\r\n"
      "To: one@b.test\r\n"
      "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
      "Message-ID: <1@a.test>\r\n"
      "Subject: hi\r\n"
      "\r\n"
      "Hello\r\n";
  static constexpr queue::MessageId kId = 0x0005f1c2a3b4c5d6;

  ManualClock clock_;
  std::unique_ptr<Reactor> reactor_;
  Options options_;
  FakeStore store_;
  Stats stats_;
  std::unique_ptr<SubmissionServer> server_;
  uint16_t port_ = 0;
  std::mutex handed_mu_;
  std::vector<Handed> handed_;  // what on_accepted got, on the store's thread
};

// RFC 5321 §4.1.1.4, §6.1: the 250 after the final dot means the server has taken
// responsibility; it goes out only once the store says the message is durable, and the message
// goes on to delivery exactly once.
TEST_F(SubmissionServerTest, RepliesQueuedOnlyOnceTheStoreSaysDurable) {
  StartServer();
  Client c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_NO_FATAL_FAILURE(BeginMessage(c));
  c.Send(std::string(kText) + ".\r\n");
  ASSERT_TRUE(StoreHolds(1));
  ExpectNothingMore(c);  // no 250 while the commit is outstanding
  EXPECT_TRUE(handed().empty()) << "handed on before it was durable";
  EXPECT_EQ(stats_.messages_received.Get(), 0u);

  store_.Complete(kId);
  EXPECT_EQ(ReadReply(c), "250 2.0.0 Ok: queued as 0005f1c2a3b4c5d6\r\n");  // FormatId(kId)

  std::vector<Handed> got = handed();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, kId);
  EXPECT_EQ(got[0].message.mail_from, "sender@a.test");
  EXPECT_EQ(got[0].message.rcpt_to, (std::vector<std::string>{"one@b.test", "two@b.test"}));
  // The session puts its Received: first (RFC 5321 §4.4); the client's text follows unchanged.
  EXPECT_EQ(got[0].message.body.rfind("Received: from client.test", 0), 0u) << got[0].message.body;
  EXPECT_TRUE(EndsWith(got[0].message.body, kText)) << got[0].message.body;
  EXPECT_EQ(stats_.messages_received.Get(), 1u);
  EXPECT_EQ(stats_.recipients_received.Get(), 2u);

  EXPECT_EQ(Say(c, "QUIT\r\n").substr(0, 4), "221 ");
  EXPECT_TRUE(ClosedByServer(c));
  EXPECT_EQ(handed().size(), 1u) << "handed on more than once";
}

// A commit that fails is a 451 (RFC 5321 §4.2.3, RFC 3463 X.3.0): the client keeps the message
// and may send it, or another, in the same session.
TEST_F(SubmissionServerTest, AFailedCommitIs451AndTheSessionGoesOn) {
  StartServer();
  Client c(port_);
  ASSERT_NO_FATAL_FAILURE(BeginMessage(c));
  c.Send(std::string(kText) + ".\r\n");
  ASSERT_TRUE(StoreHolds(1));
  store_.Complete(Unexpected{make_error_code(queue::Errc::kIo)});
  EXPECT_EQ(ReadReply(c), "451 4.3.0 Error: queue file write error\r\n");
  EXPECT_TRUE(handed().empty()) << "a message that is not durable was handed on";
  EXPECT_EQ(stats_.messages_received.Get(), 0u);
  EXPECT_EQ(stats_.recipients_received.Get(), 0u);

  // The transaction is over; a new one goes through.
  ASSERT_EQ(Say(c, "MAIL FROM:<sender@a.test>\r\n").substr(0, 4), "250 ");
  ASSERT_EQ(Say(c, "RCPT TO:<one@b.test>\r\n").substr(0, 4), "250 ");
  ASSERT_EQ(Say(c, "DATA\r\n").substr(0, 4), "354 ");
  c.Send(std::string(kText) + ".\r\n");
  ASSERT_TRUE(StoreHolds(1));
  store_.Complete(kId);
  EXPECT_EQ(ReadReply(c), "250 2.0.0 Ok: queued as 0005f1c2a3b4c5d6\r\n");
  std::vector<Handed> got = handed();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message.rcpt_to, std::vector<std::string>{"one@b.test"});
  EXPECT_EQ(stats_.messages_received.Get(), 1u);
  EXPECT_EQ(stats_.recipients_received.Get(), 1u);
}

// A store that cannot take mail now is said at MAIL, before any data is sent (RFC 5321 §4.2.3):
// 452 4.3.1 for a full disk, 451 4.3.0 for one that cannot write; not counted as the client's
// errors. A commit refused for space is 452 4.3.1. Once the store takes mail again, so does MAIL.
TEST_F(SubmissionServerTest, AStoreThatCannotTakeMailIsSaidAtMail) {
  StartServer();
  Client c(port_);
  ASSERT_EQ(ReadReply(c).rfind("220 mx.test ", 0), 0u);
  ASSERT_EQ(Say(c, "EHLO client.test\r\n").rfind("250-mx.test", 0), 0u);
  store_.SetIntake(smtp::Intake::kFull);
  for (int i = 0; i < 30; ++i) {  // more than max_errors: none of it counts
    EXPECT_EQ(Say(c, "MAIL FROM:<sender@a.test>\r\n"),
              "452 4.3.1 Error: insufficient system storage, try again later\r\n");
  }
  store_.SetIntake(smtp::Intake::kUnavailable);
  EXPECT_EQ(Say(c, "MAIL FROM:<sender@a.test>\r\n"),
            "451 4.3.0 Error: queue unavailable, try again later\r\n");
  store_.SetIntake(smtp::Intake::kOpen);
  ASSERT_EQ(Say(c, "MAIL FROM:<sender@a.test>\r\n").substr(0, 4), "250 ");
  ASSERT_EQ(Say(c, "RCPT TO:<one@b.test>\r\n").substr(0, 4), "250 ");
  ASSERT_EQ(Say(c, "DATA\r\n").substr(0, 4), "354 ");
  c.Send(std::string(kText) + ".\r\n");
  ASSERT_TRUE(StoreHolds(1));
  store_.Complete(Unexpected{make_error_code(queue::Errc::kNoSpace)});
  EXPECT_EQ(ReadReply(c), "452 4.3.1 Error: insufficient system storage, try again later\r\n");
  EXPECT_EQ(stats_.commits_failed.Get(), 1u);
  EXPECT_TRUE(handed().empty());
  EXPECT_EQ(Say(c, "NOOP\r\n").substr(0, 4), "250 ");
}

// While a commit is outstanding the connection reads nothing: what the client pipelined
// (RFC 2920) behind the message, in the same segment or later, is answered after the 250, in
// order, and what came later waits in the kernel meanwhile.
TEST_F(SubmissionServerTest, InputBehindAMessageWaitsForItsCommit) {
  StartServer();
  Client c(port_);
  ASSERT_NO_FATAL_FAILURE(BeginMessage(c));
  c.Send(std::string(kText) + ".\r\nNOOP\r\n");  // the NOOP in the same segment
  ASSERT_TRUE(StoreHolds(1));
  c.Send("RSET\r\n");  // and one more, after the server stopped reading
  ASSERT_TRUE(RunUntil([&] { return UnreadByServer(c) == 6; }));
  ExpectNothingMore(c);
  EXPECT_EQ(UnreadByServer(c), 6) << "the server read on while its commit was outstanding";

  store_.Complete(kId);
  EXPECT_EQ(ReadReply(c), "250 2.0.0 Ok: queued as 0005f1c2a3b4c5d6\r\n");
  EXPECT_EQ(ReadReply(c).substr(0, 4), "250 ");  // NOOP
  EXPECT_EQ(ReadReply(c).substr(0, 4), "250 ");  // RSET
  EXPECT_EQ(UnreadByServer(c), 0);
  ExpectNothingMore(c);
  EXPECT_EQ(handed().size(), 1u);
}

// A client that leaves while its message is being committed gets no reply it can read, but the
// message is durable: it is handed on all the same (at-least-once), and the outcome does no
// harm. The connection, which stopped reading for the commit, notices the client is gone once
// the outcome has resumed it.
TEST_F(SubmissionServerTest, AClientGoneBeforeItsCommitStillHasItsMessageDelivered) {
  StartServer();
  {
    Client c(port_);
    ASSERT_NO_FATAL_FAILURE(BeginMessage(c));
    c.Send(std::string(kText) + ".\r\n");
    ASSERT_TRUE(StoreHolds(1));
  }  // the client goes away

  store_.Complete(kId);
  EXPECT_TRUE(RunUntil([&] { return stats_.connections_inbound.Get() == 0; }));
  std::vector<Handed> got = handed();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, kId);
  EXPECT_EQ(got[0].message.rcpt_to, (std::vector<std::string>{"one@b.test", "two@b.test"}));

  // The server goes on serving.
  Client next(port_);
  EXPECT_EQ(ReadReply(next).rfind("220 mx.test ", 0), 0u);
  EXPECT_EQ(stats_.connections_accepted.Get(), 2u);
  EXPECT_EQ(stats_.connections_inbound.Get(), 1);
  EXPECT_EQ(handed().size(), 1u);
}

// The same when the connection itself is gone before the outcome arrives (here: the server was
// shut down meanwhile): the outcome, posted back to the shard, finds no connection and harms
// nothing, and the durable message is still handed on.
TEST_F(SubmissionServerTest, AnOutcomeForAConnectionAlreadyGoneIsHandedOnAndHarmless) {
  StartServer();
  Client c(port_);
  ASSERT_NO_FATAL_FAILURE(BeginMessage(c));
  c.Send(std::string(kText) + ".\r\n");
  ASSERT_TRUE(StoreHolds(1));
  server_->Shutdown();
  ASSERT_TRUE(RunUntil([&] { return stats_.connections_inbound.Get() == 0; }));
  EXPECT_TRUE(ClosedByServer(c)) << "no 250 for a message whose outcome was not known";

  store_.Complete(kId);
  for (int i = 0; i < 5; ++i)
    reactor_->RunOnce(clock_.Now());  // runs the posted outcome
  std::vector<Handed> got = handed();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, kId);
}

// RFC 5321 §4.5.1: "RCPT TO:<Postmaster>" is accepted from anyone and handed on as the
// configured mailbox, never as a recipient without a domain.
TEST_F(SubmissionServerTest, MailToTheBarePostmasterGoesToTheConfiguredMailbox) {
  options_.postmaster = "ops@b.test";
  StartServer();
  Client c(port_);
  ASSERT_EQ(ReadReply(c).rfind("220 mx.test ", 0), 0u);
  ASSERT_EQ(Say(c, "EHLO client.test\r\n").rfind("250-mx.test", 0), 0u);
  ASSERT_EQ(Say(c, "MAIL FROM:<sender@a.test>\r\n").substr(0, 4), "250 ");
  ASSERT_EQ(Say(c, "RCPT TO:<Postmaster>\r\n").substr(0, 4), "250 ");
  ASSERT_EQ(Say(c, "DATA\r\n").substr(0, 4), "354 ");
  c.Send(std::string(kText) + ".\r\n");
  ASSERT_TRUE(StoreHolds(1));
  store_.Complete(kId);
  EXPECT_EQ(ReadReply(c).substr(0, 4), "250 ");
  std::vector<Handed> got = handed();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message.rcpt_to, std::vector<std::string>{"ops@b.test"});
}

// A client that pipelines commands and never reads the replies: once more than
// kMaxQueuedOutput of replies is queued the server stops reading it (what it sends waits in the
// kernel, then TCP pushes back), and reads on once the client takes its replies; every command
// is answered, in order. Without the bound the server would read and queue replies for ever.
// EHLO: 8 octets in, some 200 out, so the kernel's buffers on both sides fill quickly.
TEST_F(SubmissionServerTest, AClientThatDoesNotReadItsRepliesIsNotReadEither) {
  StartServer();
  Client c(port_);
  ASSERT_EQ(ReadReply(c).rfind("220 mx.test ", 0), 0u);
  std::string ehlos;
  for (int i = 0; i < 1000; ++i)
    ehlos += "EHLO c.t\r\n";
  size_t sent_commands = 0;
  // Sends without blocking while the server reads; stops once the server has stopped reading
  // for a while (its socket's receive queue holds what we sent).
  int stalled_turns = 0;
  while (stalled_turns < 50 && sent_commands < 2000000) {
    ssize_t n = send(c.fd(), ehlos.data(), ehlos.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(ehlos.size())) {
      sent_commands += 1000;
    } else {
      ASSERT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << "short send " << n;
    }
    reactor_->RunOnce(clock_.Now());
    const bool stalled = stats_.output_paused.Get() > 0 && UnreadByServer(c) > 0;
    stalled_turns = stalled ? stalled_turns + 1 : 0;
  }
  EXPECT_GE(stats_.output_paused.Get(), 1u) << "the server never stopped reading";
  EXPECT_GT(UnreadByServer(c), 0) << "the server read everything the client sent";
  // Now the client reads: every EHLO gets its reply, and the server reads the rest.
  size_t replies = 0;
  std::string buffered;
  const auto end = std::chrono::steady_clock::now() + kBound;
  while (replies < sent_commands && std::chrono::steady_clock::now() < end) {
    reactor_->RunOnce(clock_.Now());
    char buf[65536];
    ssize_t n = recv(c.fd(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
      buffered.append(buf, static_cast<size_t>(n));
    size_t pos = 0;
    for (size_t eol; (eol = buffered.find("\r\n", pos)) != std::string::npos; pos = eol + 2) {
      ASSERT_EQ(buffered.compare(pos, 3, "250"), 0) << buffered.substr(pos, eol - pos);
      if (eol - pos < 4 || buffered[pos + 3] == ' ')
        ++replies;  // the last line of a reply (RFC 5321 §4.2.1)
    }
    buffered.erase(0, pos);
  }
  EXPECT_EQ(replies, sent_commands);
  EXPECT_EQ(UnreadByServer(c), 0);
}

// [server] command_timeout (RFC 5321 §4.5.3.2.7): an idle client is told 421 4.4.2 and closed,
// once the timeout has passed since its last input, not before.
TEST_F(SubmissionServerTest, AnIdleClientGets421AfterTheCommandTimeout) {
  options_.command_timeout = Seconds(300);
  StartServer();
  Client c(port_);
  ASSERT_EQ(ReadReply(c).rfind("220 mx.test ", 0), 0u);
  clock_.Advance(200s);
  ASSERT_EQ(Say(c, "NOOP\r\n").substr(0, 4), "250 ");  // input: the timeout starts again
  clock_.Advance(299s);
  ExpectNothingMore(c);

  clock_.Advance(2s);
  EXPECT_EQ(ReadReply(c), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  EXPECT_TRUE(ClosedByServer(c));
  EXPECT_TRUE(RunUntil([&] { return stats_.connections_inbound.Get() == 0; }));
}

// [server] greeting_delay: the 220 waits; a client that talks first gets 554 5.5.0 in its place
// and is closed (RFC 5321 §3.1), one that waits is greeted.
TEST_F(SubmissionServerTest, AClientThatTalksBeforeTheDelayedGreetingGets554) {
  options_.greeting_delay = Seconds(5);
  StartServer();
  Client rude(port_);
  rude.Send("EHLO client.test\r\n");
  ASSERT_TRUE(RunUntil([&] { return UnreadByServer(rude) == 0; }));  // accepted and read
  Client polite(port_);
  ASSERT_TRUE(RunUntil([&] { return stats_.connections_accepted.Get() == 2; }));
  clock_.Advance(4s);
  ExpectNothingMore(rude);
  ExpectNothingMore(polite);

  clock_.Advance(2s);
  EXPECT_EQ(ReadReply(rude), "554 5.5.0 SMTP protocol violation: input before greeting\r\n");
  EXPECT_TRUE(ClosedByServer(rude));
  EXPECT_EQ(ReadReply(polite), "220 mx.test ESMTP spate\r\n");
  EXPECT_EQ(Say(polite, "EHLO client.test\r\n").rfind("250-mx.test", 0), 0u);
}

// [server] max_connections: each of two shards takes ceil(3 / 2) = 2; the next connection on
// this shard is told 421 4.7.0 at accept (RFC 5321 §3.8), before any session exists, and is
// counted as refused, not accepted. A slot that comes free is taken again.
TEST_F(SubmissionServerTest, ConnectionsOverThisShardsShareAreRefusedAtAccept) {
  options_.max_connections = 3;
  StartServer(/*shard_count=*/2);
  auto first = std::make_unique<Client>(port_);
  Client second(port_);
  ASSERT_EQ(ReadReply(*first).rfind("220 mx.test ", 0), 0u);
  ASSERT_EQ(ReadReply(second).rfind("220 mx.test ", 0), 0u);

  Client third(port_);
  EXPECT_EQ(ReadReply(third), "421 4.7.0 mx.test Too many connections\r\n");
  EXPECT_TRUE(ClosedByServer(third));
  EXPECT_EQ(stats_.connections_accepted.Get(), 2u);
  EXPECT_EQ(stats_.connections_refused.Get(), 1u);
  EXPECT_EQ(stats_.connections_inbound.Get(), 2);

  first.reset();  // a slot comes free
  ASSERT_TRUE(RunUntil([&] { return stats_.connections_inbound.Get() == 1; }));
  Client fourth(port_);
  EXPECT_EQ(ReadReply(fourth).rfind("220 mx.test ", 0), 0u);
  EXPECT_EQ(stats_.connections_accepted.Get(), 3u);
  EXPECT_EQ(stats_.connections_refused.Get(), 1u);
  EXPECT_EQ(stats_.connections_inbound.Get(), 2);
  EXPECT_EQ(stats_.messages_received.Get(), 0u);
  EXPECT_EQ(stats_.recipients_received.Get(), 0u);
}

// [server] max_connections_per_client: the client (127.0.0.1) over its limit is told so at
// accept; other limits are not reached.
TEST_F(SubmissionServerTest, ConnectionsOverThePerClientLimitAreRefusedAtAccept) {
  options_.max_connections_per_client = 1;
  StartServer();
  Client first(port_);
  ASSERT_EQ(ReadReply(first).rfind("220 mx.test ", 0), 0u);
  Client second(port_);
  EXPECT_EQ(ReadReply(second), "421 4.7.0 mx.test Too many connections from your address\r\n");
  EXPECT_TRUE(ClosedByServer(second));
  EXPECT_EQ(stats_.connections_accepted.Get(), 1u);
  EXPECT_EQ(stats_.connections_refused.Get(), 1u);
  EXPECT_EQ(stats_.connections_inbound.Get(), 1);
  ExpectNothingMore(first);  // the admitted client is untouched
}
}  // namespace
}  // namespace spate::server
