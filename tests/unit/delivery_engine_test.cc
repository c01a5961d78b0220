// tests/unit/delivery_engine_test.cc
//
// The delivery engine of one shard (delivery/delivery.h) as a component: a real io_uring reactor
// driven by a ManualClock, a FakeSpool (tests/unit/fake_spool.h) and a scripted SMTP peer on
// 127.0.0.1 (port 0, the bound port read back). Time moves only when a test says so, so idle
// timeouts, backoffs and retry times are exact; the loop is turned until a condition holds, with
// a generous real-time bound, and nothing sleeps. The peer runs on its own thread: a poll() loop
// over its listening socket and its connections, answering each command as scripted and
// recording what it saw.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/clock.h"
#include "core/net.h"
#include "core/reactor.h"
#include "core/shard.h"
#include "core/smtp/server_session.h"
#include "delivery/accounting.h"
#include "delivery/bounce_class.h"
#include "delivery/controls.h"
#include "delivery/delivery.h"
#include "delivery/job.h"
#include "delivery/options.h"
#include "delivery/pool.h"
#include "delivery/routing.h"
#include "delivery/scheduler.h"
#include "delivery/shaping.h"
#include "delivery/stats.h"
#include "tests/unit/fake_spool.h"

#include <nlohmann/json.hpp>

namespace spate::delivery {
namespace {

using namespace std::chrono_literals;

constexpr auto kRealTimeBound = 20s;  // a condition that takes longer has failed
constexpr char kDomain[] = "example.test";

// Closes a descriptor at the end of its scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0)
      close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

Endpoint LoopbackEndpoint(uint16_t port) {
  Endpoint e;
  e.text = "127.0.0.1:" + std::to_string(port);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::memcpy(&e.addr, &a, sizeof a);
  e.len = sizeof a;
  return e;
}

// A TCP socket bound to 127.0.0.1 on a port the kernel picks, read back into `port`.
int BindLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// A port that refuses connections: bound for the test's life (no one else gets it), never
// listening.
class ClosedPort {
 public:
  ClosedPort() : fd_(BindLoopback(&port_)) {}
  bool ok() const { return fd_.get() >= 0; }
  Endpoint endpoint() const { return LoopbackEndpoint(port_); }

 private:
  uint16_t port_ = 0;
  Fd fd_;
};

// A scripted SMTP server. It offers PIPELINING, answers MAIL 250, RCPT as scripted per address
// (then 250), DATA 354 when a recipient was accepted (else 554, RFC 2920 §3.1), the end of data
// 250, QUIT 221 and then hangs up. It can hold its greeting or its reply to the end of data
// until told (or let the held end-of-data replies go a few at a time), or hang up on every
// connection as soon as it is accepted.
// Threading: its own thread serves; every method is for the test thread.
class ScriptedPeer {
 public:
  struct Transaction {
    std::string mail_from;
    std::string mail_line;             // the MAIL command as sent, parameters and all
    std::vector<std::string> rcpt_to;  // every RCPT, as sent
    std::vector<std::string> rcpt_lines;
    std::string body;         // un-stuffed (RFC 5321 §4.5.2), without the final "."
    bool data_ended = false;  // the end of data came (and was answered unless held)
  };
  struct Connection {
    std::vector<std::string> commands;  // verbs in order; "." for the end of data
    std::vector<Transaction> transactions;
    bool quit = false;    // QUIT came (answered 221, then the peer hung up)
    bool closed = false;  // over: after QUIT, or the client closed
  };

  ScriptedPeer() {
    listen_.Reset(BindLoopback(&port_));
    if (listen_.get() < 0 || listen(listen_.get(), 64) < 0) {
      listen_.Reset();
      return;
    }
    wake_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedPeer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    Wake();
    if (thread_.joinable())
      thread_.join();
  }
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  bool ok() const { return listen_.get() >= 0 && wake_.get() >= 0; }
  Endpoint endpoint() const { return LoopbackEndpoint(port_); }

  // RCPT replies for `address`, one per RCPT naming it, in order; then 250.
  void ScriptRcpt(const std::string& address, std::vector<std::string> replies) {
    Set([&] { rcpt_replies_[address] = std::move(replies); });
  }
  void HoldGreeting(bool hold) {
    Set([&] { hold_greeting_ = hold; });
  }
  void HoldDataEnd(bool hold) {
    Set([&] { hold_data_end_ = hold; });
  }
  // While the end of data is held: lets the replies to `n` more ends of data go, one each, in
  // the order the peer comes to them (a server that answers slowly, one message at a time).
  void ReleaseDataEnds(size_t n) {
    Set([&] { data_end_credits_ += n; });
  }
  void HangUpOnAccept(bool hang_up) {
    Set([&] { hang_up_ = hang_up; });
  }
  void OfferDsn(bool offer) {
    Set([&] { offer_dsn_ = offer; });
  }

  std::vector<Connection> connections() const {
    std::lock_guard lock(mu_);
    return connections_;
  }
  size_t accepted() const {
    std::lock_guard lock(mu_);
    return connections_.size();
  }
  size_t max_concurrent() const {
    std::lock_guard lock(mu_);
    return max_open_;
  }
  // Commands named `verb` over every connection.
  size_t count(std::string_view verb) const {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const Connection& c : connections_)
      n += static_cast<size_t>(std::count(c.commands.begin(), c.commands.end(), verb));
    return n;
  }
  // Every transaction that reached its end of data, connection by connection.
  std::vector<Transaction> transactions() const {
    std::lock_guard lock(mu_);
    std::vector<Transaction> out;
    for (const Connection& c : connections_) {
      for (const Transaction& t : c.transactions) {
        if (t.data_ended)
          out.push_back(t);
      }
    }
    return out;
  }

 private:
  struct Session {
    Fd fd;
    size_t index = 0;  // into connections_
    std::string in;
    std::string out;  // replies of this pass
    bool greeted = false;
    bool in_data = false;
    bool data_reply_due = false;  // the end of data came; its reply is held
    size_t accepted_rcpts = 0;
    bool done = false;
  };

  template <typename F>
  void Set(F&& f) {
    {
      std::lock_guard lock(mu_);
      f();
    }
    Wake();
  }
  void Wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = write(wake_.get(), &one, sizeof one);
  }

  void Loop() {
    std::vector<std::unique_ptr<Session>> sessions;
    for (;;) {
      std::vector<pollfd> fds = {{listen_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      for (auto& s : sessions)
        fds.push_back({s->fd.get(), POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR)
        return;
      if (fds[1].revents & POLLIN) {
        uint64_t n;
        [[maybe_unused]] ssize_t r = read(wake_.get(), &n, sizeof n);
      }
      std::lock_guard lock(mu_);
      if (stop_)
        return;
      for (size_t i = 0; i < sessions.size(); ++i) {
        if ((fds[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
          Read(*sessions[i]);
      }
      if (fds[0].revents & POLLIN)
        Accept(sessions);
      for (auto& s : sessions) {
        Serve(*s);
        Flush(*s);  // then a session that is over is closed below
      }
      std::erase_if(sessions, [](const auto& s) { return s->done; });
    }
  }

  void Accept(std::vector<std::unique_ptr<Session>>& sessions) {
    int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      return;
    connections_.emplace_back();
    if (hang_up_) {
      close(fd);
      connections_.back().closed = true;
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto s = std::make_unique<Session>();
    s->fd.Reset(fd);
    s->index = connections_.size() - 1;
    sessions.push_back(std::move(s));
    ++open_;
    max_open_ = std::max(max_open_, open_);
  }

  void Read(Session& s) {
    char buf[65536];
    ssize_t n = recv(s.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      s.in.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      End(s);
    }
  }

  void End(Session& s) {
    if (s.done)
      return;
    s.done = true;
    connections_[s.index].closed = true;
    --open_;
  }

  // Replies are batched per pass and written together (a pipelined group's replies in one
  // segment, as RFC 2920 §3.2 asks of servers).
  void Send(Session& s, std::string_view reply) {
    s.out.append(reply);
    s.out += "\r\n";
  }
  void Flush(Session& s) {
    if (s.out.empty() || s.fd.get() < 0)
      return;
    if (send(s.fd.get(), s.out.data(), s.out.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(s.out.size()))
      End(s);
    s.out.clear();
  }

  // Answers every complete command line buffered, as far as the script lets it.
  void Serve(Session& s) {
    Connection& c = connections_[s.index];
    if (s.done)
      return;
    if (!s.greeted) {
      if (hold_greeting_)
        return;
      s.greeted = true;
      Send(s, "220 peer.test ESMTP scripted");
    }
    while (!s.done) {
      if (s.data_reply_due) {
        if (hold_data_end_) {
          if (data_end_credits_ == 0)
            return;
          --data_end_credits_;
        }
        s.data_reply_due = false;
        Send(s, "250 2.0.0 queued");
        continue;
      }
      size_t eol = s.in.find("\r\n");
      if (eol == std::string::npos)
        return;
      std::string line = s.in.substr(0, eol);
      s.in.erase(0, eol + 2);
      if (s.in_data) {
        Transaction& t = c.transactions.back();
        if (line == ".") {
          s.in_data = false;
          t.data_ended = true;
          c.commands.push_back(".");
          s.data_reply_due = true;
        } else {
          t.body += line.starts_with('.') ? line.substr(1) : line;
          t.body += "\r\n";
        }
        continue;
      }
      std::string verb = line.substr(0, 4);
      for (char& ch : verb)
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      c.commands.push_back(verb);
      if (verb == "EHLO") {
        Send(s, offer_dsn_ ? "250-peer.test\r\n250-PIPELINING\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES"
                           : "250-peer.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 "
                             "ENHANCEDSTATUSCODES");
      } else if (verb == "HELO") {
        Send(s, "250 peer.test");
      } else if (verb == "MAIL") {
        Transaction& t = c.transactions.emplace_back();
        t.mail_from = Between(line, '<', '>');
        t.mail_line = line;
        s.accepted_rcpts = 0;
        Send(s, "250 2.1.0 ok");
      } else if (verb == "RCPT" && !c.transactions.empty()) {
        std::string address = Between(line, '<', '>');
        c.transactions.back().rcpt_to.push_back(address);
        c.transactions.back().rcpt_lines.push_back(line);
        std::string reply = "250 2.1.5 ok";
        auto it = rcpt_replies_.find(address);
        if (it != rcpt_replies_.end() && !it->second.empty()) {
          reply = it->second.front();
          it->second.erase(it->second.begin());
        }
        if (reply[0] == '2')
          ++s.accepted_rcpts;
        Send(s, reply);
      } else if (verb == "DATA" && !c.transactions.empty()) {
        if (s.accepted_rcpts > 0) {
          s.in_data = true;
          Send(s, "354 go ahead");
        } else {
          Send(s, "554 5.5.1 no valid recipients");
        }
      } else if (verb == "RSET" || verb == "NOOP") {
        Send(s, "250 2.0.0 ok");
      } else if (verb == "QUIT") {
        c.quit = true;
        // Counted as closed before the 221 goes out: the client opens its next connection
        // only after reading it, so the concurrent count is never one too high.
        Send(s, "221 2.0.0 bye");
        End(s);
      } else {
        Send(s, "502 5.5.2 unknown command");
      }
    }
  }

  static std::string Between(const std::string& line, char open, char close) {
    size_t a = line.find(open);
    size_t b = line.find(close, a == std::string::npos ? 0 : a);
    if (a == std::string::npos || b == std::string::npos)
      return "";
    return line.substr(a + 1, b - a - 1);
  }

  uint16_t port_ = 0;
  Fd listen_;
  Fd wake_;
  std::thread thread_;
  mutable std::mutex mu_;
  bool stop_ = false;
  std::map<std::string, std::vector<std::string>> rcpt_replies_;
  bool hold_greeting_ = false;
  bool hold_data_end_ = false;
  size_t data_end_credits_ = 0;  // held replies to let go (ReleaseDataEnds)
  bool hang_up_ = false;
  bool offer_dsn_ = false;
  std::vector<Connection> connections_;
  size_t open_ = 0;
  size_t max_open_ = 0;
};

// local@kDomain.
std::string Rcpt(const std::string& local) {
  return local + "@" + kDomain;
}

// The message bytes of message `id`: canonical (CRLF), with a line that needs dot-stuffing.
std::string BodyOf(queue::MessageId id) {
  return "Subject: message " + std::to_string(id) + "\r\n\r\nHello " + std::to_string(id) +
         ".\r\n.a line that starts with a dot\r\n";
}

class DeliveryEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Reactor::Create(256, &clock_);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    reactor_ = std::move(r).value();
    ASSERT_TRUE(peer_.ok());
    options_.log_deliveries = false;
  }

  void TearDown() override {
    if (delivery_ != nullptr || owner_ != nullptr) {
      // Connections still open end here; the ring then has only its own wake-up read.
      for (Delivery* d : {delivery_.get(), owner_.get()}) {
        if (d != nullptr)
          d->Shutdown();
      }
      EXPECT_TRUE(RunUntil([&] { return reactor_->pending_ops() <= 1; }));
      owner_.reset();
      delivery_.reset();
    }
  }

  // Starts the engine with options_; `kDomain` (and every other domain) goes to `route`,
  // the scripted peer by default.
  void Start(std::optional<Endpoint> route = std::nullopt) {
    routing_ = std::make_unique<StaticRouting>(std::map<std::string, Endpoint>{},
                                               route ? *route : peer_.endpoint());
    StartWith(*routing_);
  }
  void StartWith(Routing& routing) {
    delivery_ = std::make_unique<Delivery>(*reactor_, options_, spool_, routing, stats_, 42);
  }

  // Turns the loop until `done()`, at most kRealTimeBound of real time. The clock stands still.
  bool RunUntil(const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + kRealTimeBound;
    for (;;) {
      if (done())
        return true;
      if (std::chrono::steady_clock::now() >= end)
        return false;
      reactor_->RunOnce(reactor_->now() + 10ms);
      if (each_turn_)
        each_turn_();
    }
  }
  // A few turns, for what must not happen: only timers and the peer could make it happen.
  void RunTurns(int turns = 10) {
    for (int i = 0; i < turns; ++i)
      reactor_->RunOnce(reactor_->now() + 5ms);
  }
  // Moves time on; the timers due by then fire at this turn.
  void Advance(std::chrono::nanoseconds d) {
    clock_.Advance(d);
    reactor_->RunOnce(reactor_->now());
  }

  // A job of message `id` to `rcpts` (spool indices 0..n-1), as submission hands it over (with
  // its body) or as recovery does (`with_body` false: read from the spool when needed).
  Job MakeJob(queue::MessageId id, const std::vector<std::string>& rcpts, bool with_body = true) {
    auto m = std::make_shared<Message>();
    m->id = id;
    m->mail_from = "sender@origin.test";
    const std::string body = BodyOf(id);
    m->body_size = body.size();
    for (uint32_t i = 0; i < rcpts.size(); ++i)
      m->AddRecipient(rcpts[i], i);
    spool_.SetBody(id, body);
    Job job;
    job.message = std::move(m);
    if (with_body)
      job.body = std::make_shared<const std::string>(body);
    for (uint32_t i = 0; i < rcpts.size(); ++i)
      job.recipients.push_back({i, 0});
    return job;
  }
  void Enqueue(Job&& job) { delivery_->Enqueue(kDomain, std::move(job)); }
  // The same, for mail to `domain` (the domain of the job's recipients).
  void EnqueueTo(const std::string& domain, Job&& job) {
    delivery_->Enqueue(domain, std::move(job));
  }

  DomainStats& domain_stats() { return stats_.ForDomain(kDomain); }
  // Milliseconds from now (the manual wall clock) to `at`.
  int64_t FromNow(int64_t at) const { return at - clock_.WallMs(); }

  ManualClock clock_;
  std::unique_ptr<Reactor> reactor_;
  Stats stats_{100};
  FakeSpool spool_;
  ScriptedPeer peer_;
  std::unique_ptr<Routing> routing_;
  Options options_;
  std::function<void()> each_turn_;  // runs after every turn of RunUntil
  std::unique_ptr<Delivery> delivery_;
  // Another shard's engine on the same reactor, for a test that hands a site over to it.
  std::unique_ptr<Delivery> owner_;
};

// ---------------------------------------------------------------------------------------------
// The pool

TEST_F(DeliveryEngineTest, PoolNeverOpensMoreThanMaxConnectionsAndFinishesEveryRecipientOnce) {
  options_.max_connections = 2;
  options_.max_messages_per_connection = 4;  // connections come and go while the queue drains
  Start();
  constexpr int kJobs = 20;
  long most_open = 0;
  each_turn_ = [&] { most_open = std::max(most_open, delivery_->open_connections(kDomain)); };
  for (int i = 1; i <= kJobs; ++i)
    Enqueue(MakeJob(i, {Rcpt("user" + std::to_string(i)), Rcpt("other")}));
  most_open = std::max(most_open, delivery_->open_connections(kDomain));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 2 * kJobs; }));

  EXPECT_EQ(most_open, 2);
  EXPECT_EQ(peer_.max_concurrent(), 2u);  // both were used, never a third
  EXPECT_GE(peer_.accepted(), static_cast<size_t>(kJobs / 4));
  for (const auto& c : peer_.connections())
    EXPECT_LE(c.transactions.size(), 4u);
  for (int i = 1; i <= kJobs; ++i) {
    EXPECT_EQ(spool_.finishes(i, 0), 1u) << "message " << i;
    EXPECT_EQ(spool_.finishes(i, 1), 1u) << "message " << i;
  }
  EXPECT_TRUE(spool_.deferred().empty());
  EXPECT_TRUE(spool_.reads().empty());  // fresh jobs brought their bodies
  EXPECT_EQ(domain_stats().delivered.Get(), 2u * kJobs);
  EXPECT_EQ(peer_.transactions().size(), static_cast<size_t>(kJobs));
}

TEST_F(DeliveryEngineTest, ConnectionQuitsAfterMaxMessagesAndTheNextOneTakesOver) {
  options_.max_connections = 1;
  options_.max_messages_per_connection = 3;
  Start();
  for (int i = 1; i <= 7; ++i)
    Enqueue(MakeJob(i, {Rcpt("rcpt" + std::to_string(i))}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 7; }));
  ASSERT_TRUE(RunUntil([&] { return peer_.count("QUIT") == 2; }));

  const auto conns = peer_.connections();
  ASSERT_EQ(conns.size(), 3u);  // ceil(7 / 3)
  EXPECT_EQ(conns[0].transactions.size(), 3u);
  EXPECT_EQ(conns[1].transactions.size(), 3u);
  EXPECT_EQ(conns[2].transactions.size(), 1u);
  for (int c = 0; c < 2; ++c) {
    // QUIT right after the third end of data, nothing in between.
    const auto& cmds = conns[c].commands;
    ASSERT_GE(cmds.size(), 2u);
    EXPECT_EQ(cmds.back(), "QUIT") << "connection " << c;
    EXPECT_EQ(cmds[cmds.size() - 2], ".") << "connection " << c;
    EXPECT_TRUE(conns[c].quit);
  }
  EXPECT_FALSE(conns[2].quit);  // the last one stays open for more mail
  EXPECT_EQ(delivery_->open_connections(kDomain), 1);
  // Each message went once, in order.
  const auto txns = peer_.transactions();
  ASSERT_EQ(txns.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(txns[i].rcpt_to, std::vector<std::string>{Rcpt("rcpt" + std::to_string(i + 1))});
    EXPECT_EQ(txns[i].body, BodyOf(i + 1));
  }
}

TEST_F(DeliveryEngineTest, RecipientsBeyondMaxPerTransactionGoInFurtherTransactionsSameBody) {
  options_.max_recipients_per_transaction = 2;
  Start();
  std::vector<std::string> rcpts;
  for (int i = 0; i < 5; ++i)
    rcpts.push_back(Rcpt("r" + std::to_string(i)));
  Enqueue(MakeJob(9, rcpts));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 5; }));

  const auto txns = peer_.transactions();
  ASSERT_EQ(txns.size(), 3u);  // 2 + 2 + 1
  std::multiset<std::string> seen;
  std::multiset<size_t> sizes;
  for (const auto& t : txns) {
    sizes.insert(t.rcpt_to.size());
    seen.insert(t.rcpt_to.begin(), t.rcpt_to.end());
    EXPECT_EQ(t.body, BodyOf(9));
    EXPECT_EQ(t.mail_from, "sender@origin.test");
  }
  EXPECT_EQ(sizes, (std::multiset<size_t>{1, 2, 2}));
  EXPECT_EQ(seen, std::multiset<std::string>(rcpts.begin(), rcpts.end()));
  for (uint32_t i = 0; i < 5; ++i)
    EXPECT_EQ(spool_.finishes(9, i), 1u) << "recipient " << i;
  EXPECT_TRUE(spool_.reads().empty());  // the parts shared the body they came with
}

// ---------------------------------------------------------------------------------------------
// Outcomes and retries

// RFC 5321 §4.5.3.1.10: a server that takes only so many recipients a transaction answers the
// rest 452 4.5.3; they go in the next transaction at once, with no deferral and no attempt.
TEST_F(DeliveryEngineTest, TooManyRecipientsGoInTheNextTransactionAtOnce) {
  Start();
  const std::string a = Rcpt("a");
  const std::string b = Rcpt("b");
  const std::string c = Rcpt("c");
  peer_.ScriptRcpt(b, {"452 4.5.3 too many recipients"});
  peer_.ScriptRcpt(c, {"452 4.5.3 too many recipients"});
  Enqueue(MakeJob(6, {a, b, c}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  EXPECT_TRUE(spool_.deferred().empty()) << "sent on, not deferred";
  EXPECT_EQ(domain_stats().delivered.Get(), 3u);
  EXPECT_EQ(domain_stats().deferred.Get(), 0u);
  size_t transactions = 0;
  for (const auto& conn : peer_.connections())
    transactions += conn.transactions.size();
  EXPECT_EQ(transactions, 2u) << "a, then b and c (their second RCPT is answered 250)";
}

// One that takes none that way would be asked for ever: those recipients are deferred.
TEST_F(DeliveryEngineTest, TooManyRecipientsForTheFirstOneIsADeferral) {
  Start();
  const std::string a = Rcpt("a");
  peer_.ScriptRcpt(a, {"452 4.5.3 too many recipients"});
  Enqueue(MakeJob(7, {a}));
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 1; }));
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_EQ(domain_stats().deferred.Get(), 1u) << "counted as a deferral";
}

// [delivery] max_age: a recipient deferred again after its message is older than that fails
// with its last reply, logged as "expired", and leaves the spool; it is not retried again.
TEST_F(DeliveryEngineTest, ARecipientStillDeferredPastMaxAgeExpiresWithItsLastReply) {
  options_.retry_base = Seconds(60);
  options_.max_age = Seconds(100);
  options_.log_deliveries = true;
  Start();
  const std::string later = Rcpt("later");
  peer_.ScriptRcpt(
      later, {"451 4.2.0 try again later", "451 4.2.0 try again later", "451 4.2.1 still busy"});
  Job job = MakeJob(6, {later});
  auto m = std::make_shared<Message>(*job.message);
  m->received_ms = reactor_->wall_ms();
  job.message = m;
  ::testing::internal::CaptureStderr();
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 1; }));
  Advance(73s);  // the first retry, at most 72 s later: 73 s old, younger than max_age
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 2; }));
  EXPECT_TRUE(spool_.finished().empty());
  Advance(145s);  // the second retry, at most 144 s later: past max_age
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  RunTurns();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(spool_.finishes(6, 0), 1u);
  EXPECT_EQ(spool_.deferred().size(), 2u) << "not deferred a third time";
  EXPECT_EQ(delivery_->scheduled(), 0u);
  EXPECT_EQ(peer_.transactions().size(), 0u);
  EXPECT_EQ(stats_.expired.Get(), 1u);
  EXPECT_EQ(domain_stats().failed.Get(), 1u);
  EXPECT_EQ(domain_stats().deferred.Get(), 2u);
  EXPECT_NE(log.find("expired id="), std::string::npos) << log;
  EXPECT_NE(log.find("attempts=3 reply=\"451 4.2.1 still busy\""), std::string::npos) << log;
}

TEST_F(DeliveryEngineTest, DeliveredFailedAndDeferredRecipientsThenTheRetryDelivers) {
  options_.retry_base = Seconds(60);
  options_.dsn = false;  // the DSN tests are below: here a failure just leaves the spool
  Start();
  const std::string ok = Rcpt("ok");
  const std::string reject = Rcpt("reject");
  const std::string later = Rcpt("later");
  peer_.ScriptRcpt(reject, {"550 5.1.1 no such user"});
  peer_.ScriptRcpt(later, {"451 4.2.0 try again later"});
  Enqueue(MakeJob(5, {ok, reject, later}));
  ASSERT_TRUE(
      RunUntil([&] { return spool_.finished().size() == 2 && spool_.deferred().size() == 1; }));

  EXPECT_EQ(spool_.finishes(5, 0), 1u);  // 250: delivered
  EXPECT_EQ(spool_.finishes(5, 1), 1u);  // 550: failed, out of the queue too
  EXPECT_EQ(domain_stats().delivered.Get(), 1u);
  EXPECT_EQ(domain_stats().failed.Get(), 1u);
  EXPECT_EQ(domain_stats().deferred.Get(), 1u);
  ASSERT_EQ(spool_.deferred().size(), 1u);
  const FakeSpool::Deferred d = spool_.deferred()[0];
  EXPECT_EQ(d.id, 5u);
  EXPECT_EQ(d.index, 2u);
  EXPECT_EQ(d.attempts, 1);
  EXPECT_GE(FromNow(d.next_attempt_ms), 48000);  // retry_base - 20%
  EXPECT_LE(FromNow(d.next_attempt_ms), 72000);  // retry_base + 20%
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_TRUE(spool_.reads().empty());
  EXPECT_TRUE(spool_.injected().empty()) << "[delivery] dsn is off";

  // Not before its time...
  Advance(std::chrono::milliseconds(FromNow(d.next_attempt_ms) - 1));
  RunTurns();
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_EQ(peer_.transactions().size(), 1u);
  // ...then retried, with the body read again from the spool: the deferred job let it go.
  Advance(std::chrono::milliseconds(Scheduler::kGranularityMs + 1));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  EXPECT_EQ(spool_.finishes(5, 2), 1u);
  EXPECT_EQ(spool_.reads(), std::vector<queue::MessageId>{5});
  EXPECT_EQ(spool_.deferred().size(), 1u);
  const auto txns = peer_.transactions();
  ASSERT_EQ(txns.size(), 2u);
  EXPECT_EQ(txns[1].rcpt_to, std::vector<std::string>{later});
  EXPECT_EQ(txns[1].body, BodyOf(5));
  EXPECT_EQ(domain_stats().delivered.Get(), 2u);
  EXPECT_EQ(delivery_->scheduled(), 0u);
}

TEST_F(DeliveryEngineTest, RepeatedDeferralsDoubleTheDelayUpToRetryMax) {
  options_.retry_base = Seconds(10);
  options_.retry_max = Seconds(40);
  Start();
  const std::string later = Rcpt("later");
  peer_.ScriptRcpt(later, std::vector<std::string>(5, "451 4.3.0 busy"));
  Enqueue(MakeJob(3, {later}));
  const double expected_s[] = {10, 20, 40, 40, 40};
  for (size_t k = 0; k < 5; ++k) {
    ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == k + 1; })) << "attempt " << k;
    const FakeSpool::Deferred d = spool_.deferred()[k];
    EXPECT_EQ(d.attempts, k + 1);
    const int64_t delay = FromNow(d.next_attempt_ms);
    EXPECT_GE(delay, std::llround(expected_s[k] * 800)) << "attempt " << k + 1;
    EXPECT_LE(delay, std::llround(expected_s[k] * 1200)) << "attempt " << k + 1;
    Advance(std::chrono::milliseconds(delay + Scheduler::kGranularityMs + 1));
  }
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(spool_.deferred().size(), 5u);
  EXPECT_EQ(peer_.count("RCPT"), 6u);
  EXPECT_EQ(spool_.reads_of(3), 5u);  // each retry read the body again
}

// A route of several addresses (an MX host's, then the next MX's): one refusing connections
// is held on its own and the same attempt goes on to the next, so nothing is deferred; later
// connections go to the working one while the first is held.
class ListRouting final : public Routing {
 public:
  explicit ListRouting(std::vector<Endpoint> hosts) : hosts_(std::move(hosts)) {}
  void Resolve(std::string_view, Done done) override {
    auto r = std::make_shared<Route>();
    r->name = "mx";
    r->hosts = hosts_;
    done(r);
  }

 private:
  std::vector<Endpoint> hosts_;
};

TEST_F(DeliveryEngineTest, ARefusingAddressFailsOverToTheNextWithinTheAttempt) {
  ClosedPort closed;
  ASSERT_TRUE(closed.ok());
  options_.max_connections = 1;
  ListRouting routing({closed.endpoint(), peer_.endpoint()});
  StartWith(routing);
  Enqueue(MakeJob(1, {Rcpt("a")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_TRUE(spool_.deferred().empty()) << "failed over, not deferred";
  EXPECT_EQ(peer_.accepted(), 1u);
  EXPECT_EQ(domain_stats().delivered.Get(), 1u);
  EXPECT_EQ(domain_stats().deferred.Get(), 0u);
}

// Every address refusing: only then is the queue deferred (once), as with a single address.
TEST_F(DeliveryEngineTest, EveryAddressRefusingDefersOnce) {
  ClosedPort a;
  ClosedPort b;
  ASSERT_TRUE(a.ok() && b.ok());
  ListRouting routing({a.endpoint(), b.endpoint()});
  StartWith(routing);
  Enqueue(MakeJob(1, {Rcpt("a")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 1; }));
  RunTurns();
  EXPECT_EQ(spool_.deferred().size(), 1u);
  EXPECT_TRUE(spool_.finished().empty());
}

TEST_F(DeliveryEngineTest, RefusedConnectionDefersTheWholeQueueAndReadsNoBody) {
  ClosedPort closed;
  ASSERT_TRUE(closed.ok());
  options_.max_connections = 1;
  options_.retry_base = Seconds(60);
  Start(closed.endpoint());
  // Recovered mail (no body in memory) and fresh mail, all for a host that is down.
  for (int i = 1; i <= 3; ++i)
    Enqueue(MakeJob(i, {Rcpt("a" + std::to_string(i))}, /*with_body=*/false));
  for (int i = 4; i <= 6; ++i)
    Enqueue(MakeJob(i, {Rcpt("a" + std::to_string(i))}));
  EXPECT_EQ(delivery_->open_connections(kDomain), 1);
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 6; }));
  RunTurns();

  // One failed attempt deferred all six (the clock never moved, so no second attempt could be
  // made after the hold), each once.
  EXPECT_EQ(spool_.deferred().size(), 6u);
  for (int i = 1; i <= 6; ++i) {
    auto it = std::find_if(spool_.deferred().begin(), spool_.deferred().end(),
                           [&](const auto& d) { return d.id == static_cast<uint64_t>(i); });
    ASSERT_NE(it, spool_.deferred().end()) << "message " << i;
    EXPECT_EQ(it->attempts, 1);
    EXPECT_GE(FromNow(it->next_attempt_ms), 48000);
  }
  EXPECT_TRUE(spool_.reads().empty());
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_EQ(delivery_->open_connections(kDomain), 0);
  EXPECT_EQ(delivery_->scheduled(), 6u);
  EXPECT_EQ(domain_stats().deferred.Get(), 6u);

  // Due again, still down: deferred again, still without reading a body.
  Advance(73s);
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 12; }));
  for (size_t k = 6; k < 12; ++k)
    EXPECT_EQ(spool_.deferred()[k].attempts, 2);
  EXPECT_TRUE(spool_.reads().empty());
}

TEST_F(DeliveryEngineTest, HostThatHangsUpBeforeItsGreetingCostsOneConnectionForTheQueue) {
  peer_.HangUpOnAccept(true);
  options_.max_connections = 1;
  Start();
  for (int i = 1; i <= 6; ++i)
    Enqueue(MakeJob(i, {Rcpt("a" + std::to_string(i))}, /*with_body=*/false));
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 6; }));
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 1u);
  EXPECT_TRUE(spool_.reads().empty());
  EXPECT_EQ(delivery_->scheduled(), 6u);

  // Mail that comes right after waits out a hold instead of hammering the host: no new
  // connection until min(retry_base, 5 s) has passed, then one, which defers it.
  Enqueue(MakeJob(7, {Rcpt("a7")}));
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 1u);
  EXPECT_EQ(spool_.deferred().size(), 6u);
  Advance(4900ms);
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 1u);
  Advance(100ms);
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 7; }));
  EXPECT_EQ(peer_.accepted(), 2u);
  EXPECT_EQ(spool_.deferred()[6].id, 7u);
  EXPECT_EQ(spool_.deferred()[6].attempts, 1);
}

TEST_F(DeliveryEngineTest, NoRouteDefersWith451AndKeepsTheMail) {
  routing_ = std::make_unique<StaticRouting>(std::map<std::string, Endpoint>{}, std::nullopt);
  options_.log_deliveries = true;  // the reply is in the delivery log line, where operators see it
  StartWith(*routing_);
  ::testing::internal::CaptureStderr();
  Enqueue(MakeJob(7, {Rcpt("a"), Rcpt("b")}));
  RunTurns();
  const std::string log = ::testing::internal::GetCapturedStderr();

  ASSERT_EQ(spool_.deferred().size(), 2u);
  for (uint32_t i = 0; i < 2; ++i) {
    const FakeSpool::Deferred& d = spool_.deferred()[i];
    EXPECT_EQ(d.id, 7u);
    EXPECT_EQ(d.index, i);
    EXPECT_EQ(d.attempts, 1);
    EXPECT_GE(FromNow(d.next_attempt_ms), 48000);
    EXPECT_LE(FromNow(d.next_attempt_ms), 72000);
  }
  EXPECT_NE(log.find("reply=\"451 4.4.0 no route to example.test"), std::string::npos) << log;
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_EQ(delivery_->scheduled(), 1u);  // kept, to be tried again
  EXPECT_EQ(peer_.accepted(), 0u);

  // Due again, still without a route: deferred again, and still kept.
  Advance(73s);
  RunTurns();
  ASSERT_EQ(spool_.deferred().size(), 4u);
  EXPECT_EQ(spool_.deferred()[2].attempts, 2);
  EXPECT_EQ(spool_.deferred()[3].attempts, 2);
  EXPECT_EQ(delivery_->scheduled(), 1u);
}

// A routing that says why there is nowhere to go (an MX lookup: null MX, NXDOMAIN, SERVFAIL).
class FailingRouting final : public Routing {
 public:
  explicit FailingRouting(RouteFailure f) : failure_(std::move(f)) {}
  void Resolve(std::string_view, Done done) override {
    ++asked;
    auto r = std::make_shared<Route>();
    r->name = "mx";
    r->failure = failure_;
    done(r);
  }
  int asked = 0;

 private:
  RouteFailure failure_;
};

// A permanent routing failure (RFC 7505 null MX: 556 5.1.10) fails every recipient at once,
// without a connection; a temporary one (451 4.4.3) defers them, and the route is asked again
// when they are due.
TEST_F(DeliveryEngineTest, ARouteFailureFailsOrDefersWithItsReply) {
  FailingRouting null_mx(RouteFailure{556, "5.1.10", "example.test does not accept mail"});
  options_.log_deliveries = true;
  StartWith(null_mx);
  ::testing::internal::CaptureStderr();
  Enqueue(MakeJob(8, {Rcpt("a"), Rcpt("b")}));
  RunTurns();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(spool_.finished().size(), 2u) << "failed: they leave the queue";
  EXPECT_TRUE(spool_.deferred().empty());
  EXPECT_EQ(domain_stats().failed.Get(), 2u);
  EXPECT_EQ(peer_.connections().size(), 0u) << "no connection for a null MX";
  EXPECT_NE(log.find("reply=\"556 5.1.10 example.test does not accept mail"), std::string::npos)
      << log;
}

TEST_F(DeliveryEngineTest, ATemporaryRouteFailureDefersAndAsksAgain) {
  FailingRouting servfail(RouteFailure{451, "4.4.3", "MX lookup failed: servfail"});
  StartWith(servfail);
  Enqueue(MakeJob(9, {Rcpt("a")}));
  RunTurns();
  ASSERT_EQ(spool_.deferred().size(), 1u);
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_EQ(servfail.asked, 1);
  Advance(73s);
  RunTurns();
  EXPECT_EQ(servfail.asked, 2) << "asked again when the recipient was due";
  EXPECT_EQ(spool_.deferred().size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// DSNs

// The recipients that failed in one transaction share one DSN, from <> to the sender, and
// leave the spool only once it is stored; NOTIFY=NEVER, and the null sender, get none.
// A bounce to a sender address past ASCII goes with SMTPUTF8 (RFC 6531 §3.4): without it the
// sender's server refuses it (553 5.6.7), and a bounce, from <>, is not bounced in turn. Two
// bounces of one message have Message-IDs of their own.
TEST_F(DeliveryEngineTest, ABounceToAnInternationalSenderGoesWithSmtputf8) {
  options_.dsn = true;
  Start();
  const std::string a = Rcpt("a"), b = Rcpt("b");
  peer_.ScriptRcpt(a, {"550 5.1.1 no such user"});
  Job job = MakeJob(9, {a});
  auto m = std::make_shared<Message>(*job.message);
  m->mail_from = "j\xc3\xb6rg@origin.test";  // "jörg"
  m->smtputf8 = true;
  job.message = m;
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return spool_.injected().size() == 1; }));
  EXPECT_TRUE(spool_.injected()[0].smtputf8);
  EXPECT_EQ(spool_.injected()[0].rcpt_to, std::vector<std::string>{m->mail_from});

  peer_.ScriptRcpt(b, {"550 5.1.1 no such user"});
  Job ascii = MakeJob(9, {b});  // the same message id: its second bounce
  auto utf8_original = std::make_shared<Message>(*ascii.message);
  utf8_original->smtputf8 = true;  // an SMTPUTF8 original, from an ASCII sender
  ascii.message = utf8_original;
  Enqueue(std::move(ascii));
  ASSERT_TRUE(RunUntil([&] { return spool_.injected().size() == 2; }));
  EXPECT_FALSE(spool_.injected()[1].smtputf8) << "an ASCII sender needs none";
  auto message_id = [](const std::string& text) {
    const size_t at = text.find("Message-ID: ");
    return at == std::string::npos ? std::string() : text.substr(at, text.find("\r\n", at) - at);
  };
  EXPECT_NE(message_id(spool_.injected()[0].body), "");
  EXPECT_NE(message_id(spool_.injected()[0].body), message_id(spool_.injected()[1].body));
}

TEST_F(DeliveryEngineTest, FailedRecipientsOfOneTransactionShareOneDsnStoredBeforeTheyLeave) {
  options_.dsn = true;
  Start();
  const std::string a = Rcpt("a"), b = Rcpt("b"), c = Rcpt("c"), ok = Rcpt("ok");
  // Each refuses twice: at the first attempt and at the retry after a DSN could not be stored.
  peer_.ScriptRcpt(a, {"550 5.1.1 no such user", "550 5.1.1 no such user"});
  peer_.ScriptRcpt(b, {"552 5.2.2 mailbox full", "552 5.2.2 mailbox full"});
  peer_.ScriptRcpt(c, {"550 5.1.1 no such user"});
  Job job = MakeJob(8, {a, b, c, ok});
  auto m = std::make_shared<Message>(*job.message);
  m->envid = "env-8";
  m->dsn.resize(4);
  m->dsn[1].orcpt = "rfc822;B@Original.test";
  m->dsn[2].notify = smtp::kNotifyNever;  // c asked for none
  job.message = m;
  spool_.FailInjects(true);  // first, the spool will not take it
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return spool_.injected().size() == 1; }));
  RunTurns();
  // Not stored: a and b stay in the spool, to be tried again; c (no DSN wanted) is gone.
  EXPECT_EQ(spool_.finishes(8, 0), 0u);
  EXPECT_EQ(spool_.finishes(8, 1), 0u);
  EXPECT_EQ(spool_.finishes(8, 2), 1u);
  EXPECT_EQ(spool_.finishes(8, 3), 1u);
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_EQ(stats_.dsns.Get(), 0u);

  spool_.FailInjects(false);
  Advance(61s);
  ASSERT_TRUE(RunUntil([&] { return spool_.finishes(8, 0) == 1 && spool_.finishes(8, 1) == 1; }));
  ASSERT_EQ(spool_.injected().size(), 2u);
  EXPECT_EQ(stats_.dsns.Get(), 1u);
  const queue::NewMessage& dsn = spool_.injected()[1];
  EXPECT_EQ(dsn.mail_from, "") << "from the null sender";
  EXPECT_EQ(dsn.rcpt_to, std::vector<std::string>{"sender@origin.test"});
  const std::string& text = dsn.body;
  EXPECT_NE(text.find("Original-Envelope-Id: env-8\r\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Final-Recipient: rfc822; " + a + "\r\nAction: failed\r\nStatus: 5.1.1\r\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Original-Recipient: rfc822;B@Original.test\r\nFinal-Recipient: rfc822; " +
                      b + "\r\nAction: failed\r\nStatus: 5.2.2\r\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n"), std::string::npos);
  EXPECT_EQ(text.find("Final-Recipient: rfc822; " + c), std::string::npos) << "NOTIFY=NEVER";
  EXPECT_EQ(text.find("Final-Recipient: rfc822; " + ok), std::string::npos);
  EXPECT_NE(text.find("Subject: message 8\r\n"), std::string::npos)
      << "the original's headers come back\n"
      << text;
  EXPECT_EQ(text.find("Hello 8."), std::string::npos) << "not its body (no RET=FULL)";
}

TEST_F(DeliveryEngineTest, NoDsnGoesToTheNullSender) {
  options_.dsn = true;
  Start();
  const std::string a = Rcpt("a");
  peer_.ScriptRcpt(a, {"550 5.1.1 no such user"});
  Job job = MakeJob(9, {a});
  auto m = std::make_shared<Message>(*job.message);
  m->mail_from = "";  // a bounce itself
  job.message = m;
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return spool_.finishes(9, 0) == 1; }));
  RunTurns();
  EXPECT_TRUE(spool_.injected().empty());
  EXPECT_TRUE(spool_.reads().empty());
  EXPECT_EQ(stats_.dsns_failed.Get(), 1u) << "a bounce that fails is dropped, and counted";
  EXPECT_EQ(stats_.dsns.Get(), 0u);
}

// NOTIFY=SUCCESS to a server without DSN: a "relayed" notice from us, and the recipient leaves
// the spool at once (a lost notice must not deliver it twice). To a server that offers DSN the
// parameters go on (RFC 3461 §4), xtext and all, and the notice is its to send: none from us.
TEST_F(DeliveryEngineTest, SuccessNoticeIsRelayedUnlessTheServerTakesTheDsnParameters) {
  Start();
  const std::string a = Rcpt("a"), b = Rcpt("b");
  auto job_of = [&](queue::MessageId id) {
    Job job = MakeJob(id, {a, b});
    auto m = std::make_shared<Message>(*job.message);
    m->envid = "env+" + std::to_string(id);
    m->ret = 2;
    m->dsn.resize(2);
    m->dsn[0].notify = smtp::kNotifySuccess | smtp::kNotifyFailure;
    m->dsn[0].orcpt = "rfc822;A=1@Original.test";
    job.message = m;
    return job;
  };
  Enqueue(job_of(11));
  // Both recipients are finished as they are delivered, the last one with its message's body:
  // the notice must not depend on reading it back.
  spool_.DropBody(11);
  ASSERT_TRUE(RunUntil([&] { return spool_.injected().size() == 1; }));
  EXPECT_EQ(spool_.finishes(11, 0), 1u);
  EXPECT_EQ(spool_.finishes(11, 1), 1u);
  const std::string& text = spool_.injected()[0].body;
  EXPECT_NE(text.find("Subject: Successful Mail Delivery Report\r\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Final-Recipient: rfc822; " + a + "\r\nAction: relayed\r\nStatus: 2.0.0\r\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("Final-Recipient: rfc822; " + b), std::string::npos) << "b asked for none";
  EXPECT_NE(text.find("Subject: message 11\r\n"), std::string::npos)
      << "the original's headers, from the body the transaction sent\n"
      << text;
  ASSERT_EQ(peer_.transactions().size(), 1u);
  EXPECT_EQ(peer_.transactions()[0].mail_line.find("ENVID"), std::string::npos)
      << "no DSN parameters to a server that does not offer DSN";

  peer_.OfferDsn(true);
  Advance(10s);  // the idle connection is gone; the next one sees DSN offered
  Enqueue(job_of(12));
  ASSERT_TRUE(RunUntil([&] { return spool_.finishes(12, 0) == 1 && spool_.finishes(12, 1) == 1; }));
  RunTurns();
  EXPECT_EQ(spool_.injected().size(), 1u) << "the server reports the success, not us";
  const auto txns = peer_.transactions();
  ASSERT_EQ(txns.size(), 2u);
  EXPECT_NE(txns[1].mail_line.find(" RET=HDRS ENVID=env+2B12"), std::string::npos)
      << txns[1].mail_line;
  ASSERT_EQ(txns[1].rcpt_lines.size(), 2u);
  EXPECT_EQ(txns[1].rcpt_lines[0],
            "RCPT TO:<" + a + "> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+3D1@Original.test");
  EXPECT_EQ(txns[1].rcpt_lines[1], "RCPT TO:<" + b + ">");
}

// NOTIFY=DELAY: once a recipient is still deferred delay_warning after its message came, its
// sender gets one "delayed" notice, and the spool keeps that it did (no second one at the next
// retry). No NOTIFY means FAILURE only: no delay notice.
TEST_F(DeliveryEngineTest, DelayNoticeGoesOnceWhenStillDeferredAfterDelayWarning) {
  options_.retry_base = Seconds(60);
  options_.delay_warning = Seconds(100);
  options_.max_age = Seconds(1000);
  Start();
  const std::string a = Rcpt("a"), b = Rcpt("b");
  const std::vector<std::string> later(4, "451 4.2.0 try again later");
  peer_.ScriptRcpt(a, later);
  peer_.ScriptRcpt(b, later);
  Job job = MakeJob(13, {a, b});
  auto m = std::make_shared<Message>(*job.message);
  m->received_ms = reactor_->wall_ms();
  m->dsn.resize(2);
  m->dsn[0].notify = smtp::kNotifyDelay | smtp::kNotifyFailure;
  job.message = m;
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 2; }));
  EXPECT_FALSE(spool_.deferred()[0].delay_warned);
  EXPECT_TRUE(spool_.injected().empty()) << "not deferred long enough yet";
  Advance(73s);
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 4; }));
  EXPECT_TRUE(spool_.injected().empty());
  Advance(145s);  // past delay_warning
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 6; }));
  ASSERT_TRUE(RunUntil([&] { return spool_.injected().size() == 1; }));
  const std::string& text = spool_.injected()[0].body;
  EXPECT_NE(text.find("Subject: Delayed Mail (still being retried)\r\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("Final-Recipient: rfc822; " + a + "\r\nAction: delayed\r\nStatus: 4.2.0\r\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Will-Retry-Until: "), std::string::npos) << text;
  EXPECT_EQ(text.find("Final-Recipient: rfc822; " + b), std::string::npos) << "no NOTIFY: FAILURE";
  for (size_t i = 4; i < 6; ++i) {
    const FakeSpool::Deferred& d = spool_.deferred()[i];
    EXPECT_EQ(d.delay_warned, d.index == 0) << "the spool keeps who was told, index " << d.index;
  }
  EXPECT_EQ(spool_.finishes(13, 0), 0u) << "a delayed recipient stays";
  Advance(290s);
  ASSERT_TRUE(RunUntil([&] { return spool_.deferred().size() == 8; }));
  RunTurns();
  EXPECT_EQ(spool_.injected().size(), 1u) << "told once";
}

// ---------------------------------------------------------------------------------------------
// Accounting, bounce classes, suppression, campaigns

// Keeps every record it is given, formatted, and parsed back.
class KeptRecords final : public Accounting {
 public:
  void Write(const Record& r) override { lines.push_back(FormatRecord(r)); }
  std::vector<nlohmann::json> Of(std::string_view type) const {
    std::vector<nlohmann::json> out;
    for (const std::string& l : lines) {
      nlohmann::json j = nlohmann::json::parse(l);
      if (j["type"] == type)
        out.push_back(std::move(j));
    }
    return out;
  }
  std::vector<std::string> lines;
};

// Each outcome is a record with what an operator asks of it: the reply, the peer, the attempt,
// the bounce class of a failure, and the campaign; a bounce that says the address is no good
// puts it on the suppression list, one that says the mailbox is full does not.
TEST_F(DeliveryEngineTest, EachOutcomeIsARecordWithItsClassAndOnlyBadAddressesAreSuppressed) {
  options_.retry_base = Seconds(60);
  Start();
  KeptRecords records;
  delivery_->SetAccounting(&records);
  const std::string ok = Rcpt("ok"), gone = Rcpt("gone"), full = Rcpt("full"),
                    later = Rcpt("later");
  peer_.ScriptRcpt(gone,
                   {"550 5.1.1 <gone@example.test>: Recipient address rejected: User unknown"});
  peer_.ScriptRcpt(full, {"552 5.2.2 mailbox full"});
  peer_.ScriptRcpt(later,
                   {"451 4.7.0 [TSS04] Messages temporarily deferred due to user complaints"});
  Job job = MakeJob(21, {ok, gone, full, later});
  auto m = std::make_shared<Message>(*job.message);
  m->campaign = "spring-sale";
  m->received_ms = reactor_->wall_ms() - 5000;
  m->dsn.resize(4);
  for (auto& d : m->dsn)
    d.notify = smtp::kNotifyNever;  // no DSNs: this test is about records
  job.message = m;
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return records.lines.size() == 4; }));

  const auto delivered = records.Of("Delivery");
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0]["recipient"], ok);
  EXPECT_EQ(delivered[0]["id"], queue::FormatId(21));
  EXPECT_EQ(delivered[0]["sender"], "sender@origin.test");
  EXPECT_EQ(delivered[0]["domain"], kDomain);
  EXPECT_EQ(delivered[0]["campaign"], "spring-sale");
  EXPECT_EQ(delivered[0]["attempts"], 1);
  EXPECT_EQ(delivered[0]["reply"]["code"], 250);
  EXPECT_EQ(delivered[0]["peer"]["address"], peer_.endpoint().text);
  EXPECT_EQ(delivered[0]["queued"], m->received_ms);
  EXPECT_GE(delivered[0]["time"].get<int64_t>(), m->received_ms);
  EXPECT_FALSE(delivered[0].contains("class"));

  const auto bounced = records.Of("Bounce");
  ASSERT_EQ(bounced.size(), 2u);
  std::map<std::string, std::string> class_of;
  for (const auto& b : bounced)
    class_of[b["recipient"]] = b["class"];
  EXPECT_EQ(class_of[gone], "InvalidRecipient");
  EXPECT_EQ(class_of[full], "QuotaIssues");
  EXPECT_EQ(bounced[0]["reply"]["code"], 550);
  EXPECT_EQ(bounced[0]["reply"]["enhanced"], "5.1.1");

  const auto transient = records.Of("TransientFailure");
  ASSERT_EQ(transient.size(), 1u);
  EXPECT_EQ(transient[0]["recipient"], later);
  EXPECT_EQ(transient[0]["class"], "SpamBlock");

  // Only the address that does not exist goes on the list.
  ASSERT_EQ(spool_.suppressed().size(), 1u);
  EXPECT_EQ(spool_.suppressed()[0].address, gone);
  EXPECT_EQ(spool_.suppressed()[0].klass, "InvalidRecipient");
  EXPECT_NE(spool_.suppressed()[0].reason.find("User unknown"), std::string::npos);

  EXPECT_EQ(domain_stats().bounces[static_cast<size_t>(BounceClass::kInvalidRecipient)].Get(), 1u);
  EXPECT_EQ(domain_stats().bounces[static_cast<size_t>(BounceClass::kQuotaIssues)].Get(), 1u);
  DomainStats& campaign = stats_.ForCampaign("spring-sale");
  EXPECT_EQ(campaign.delivered.Get(), 1u);
  EXPECT_EQ(campaign.failed.Get(), 2u);
  EXPECT_EQ(campaign.deferred.Get(), 1u);
}

// An expiry is an Expiration record of class MessageExpired, and never a reason to suppress.
TEST_F(DeliveryEngineTest, AnExpiryIsRecordedAsMessageExpiredAndNotSuppressed) {
  options_.retry_base = Seconds(60);
  options_.max_age = Seconds(10);
  options_.dsn = false;
  Start();
  KeptRecords records;
  delivery_->SetAccounting(&records);
  const std::string later = Rcpt("later");
  peer_.ScriptRcpt(later,
                   {"450 4.1.1 <later@example.test>: Recipient address rejected: unverified"});
  Job job = MakeJob(22, {later});
  auto m = std::make_shared<Message>(*job.message);
  m->received_ms = reactor_->wall_ms() - 20000;  // past max_age already
  job.message = m;
  Enqueue(std::move(job));
  ASSERT_TRUE(RunUntil([&] { return records.lines.size() == 1; }));
  const auto expired = records.Of("Expiration");
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0]["class"], "MessageExpired");
  EXPECT_EQ(expired[0]["reply"]["code"], 450);
  EXPECT_TRUE(spool_.suppressed().empty());
  EXPECT_EQ(domain_stats().bounces[static_cast<size_t>(BounceClass::kMessageExpired)].Get(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Sites

// A routing that answers each domain with the route set for it, the same RouteRef until it is
// set again (as a cached MX lookup does); null (no route) for any other.
class MapRouting final : public Routing {
 public:
  void Set(const std::string& domain, RouteRef route) { routes_[domain] = std::move(route); }
  void Resolve(std::string_view domain, Done done) override {
    auto it = routes_.find(domain);
    done(it != routes_.end() ? it->second : nullptr);
  }

 private:
  std::map<std::string, RouteRef, std::less<>> routes_;
};

// The MX host set of the sites below (as MxRouting names one: sorted, joined by ',').
constexpr char kSite[] = "mx1.peer.test,mx2.peer.test";

// A route to `hosts`, the i-th found for MX host mx<i+1>.peer.test; `site` empty: a static
// route (the domain is a site of its own). A new object each time, as each lookup gives.
RouteRef MakeRoute(const std::string& site, const std::vector<Endpoint>& hosts) {
  auto r = std::make_shared<Route>();
  r->name = site.empty() ? hosts.front().text : site;
  r->site = site;
  r->hosts = hosts;
  for (size_t i = 0; i < hosts.size(); ++i)
    r->host_names.push_back("mx" + std::to_string(i + 1) + ".peer.test");
  return r;
}

// The delivery log line about recipient `rcpt`, or "" when there is none.
std::string LogLineOf(const std::string& log, const std::string& rcpt) {
  size_t at = log.find("rcpt=<" + rcpt + ">");
  if (at == std::string::npos)
    return "";
  size_t begin = log.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  return log.substr(begin, log.find('\n', at) - begin);
}

// Two domains whose MX host sets are equal: one queue and one pool, max_connections for the
// two together, one count of connections; outcomes counted for the site and for each domain.
TEST_F(DeliveryEngineTest, DomainsWithTheSameMxHostsShareOnePoolAndItsConnectionLimit) {
  options_.max_connections = 2;
  MapRouting routing;
  routing.Set("a.test", MakeRoute(kSite, {peer_.endpoint()}));
  routing.Set("b.test", MakeRoute(kSite, {peer_.endpoint()}));
  StartWith(routing);
  peer_.HoldDataEnd(true);  // each connection stays busy with its first transaction
  long most_open = 0;
  each_turn_ = [&] { most_open = std::max(most_open, delivery_->open_connections(kSite)); };
  constexpr int kJobsEach = 4;
  for (int i = 1; i <= kJobsEach; ++i) {
    EnqueueTo("a.test", MakeJob(i, {"u" + std::to_string(i) + "@a.test"}));
    EnqueueTo("b.test", MakeJob(kJobsEach + i, {"u" + std::to_string(i) + "@b.test"}));
  }
  ASSERT_TRUE(RunUntil([&] { return peer_.count(".") >= 2; }));
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 2u) << "two connections for the two domains together";
  EXPECT_EQ(peer_.count("."), 2u);
  EXPECT_EQ(delivery_->sites(), 1u);
  EXPECT_EQ(delivery_->open_connections(kSite), 2);
  EXPECT_EQ(delivery_->open_connections("a.test"), -1) << "no site of its own";
  EXPECT_EQ(delivery_->open_connections("b.test"), -1) << "no site of its own";
  EXPECT_EQ(stats_.ForSite(kSite).connections.Get(), 2);

  peer_.HoldDataEnd(false);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 2 * kJobsEach; }));
  EXPECT_EQ(most_open, 2);
  EXPECT_EQ(peer_.max_concurrent(), 2u);
  EXPECT_EQ(peer_.accepted(), 2u) << "both connections carried every message";
  for (int i = 1; i <= 2 * kJobsEach; ++i)
    EXPECT_EQ(spool_.finishes(i, 0), 1u) << "message " << i;
  EXPECT_TRUE(spool_.deferred().empty());
  EXPECT_EQ(peer_.transactions().size(), 2u * kJobsEach);
  for (const auto& t : peer_.transactions()) {
    ASSERT_EQ(t.rcpt_to.size(), 1u);
    const int n = std::stoi(t.rcpt_to[0].substr(1));
    EXPECT_EQ(t.body, BodyOf(t.rcpt_to[0].ends_with("@a.test") ? n : kJobsEach + n));
  }
  EXPECT_EQ(stats_.ForSite(kSite).delivered.Get(), 2u * kJobsEach);
  EXPECT_EQ(stats_.ForDomain("a.test").delivered.Get(), static_cast<uint64_t>(kJobsEach));
  EXPECT_EQ(stats_.ForDomain("b.test").delivered.Get(), static_cast<uint64_t>(kJobsEach));
  std::vector<std::string> sites;
  stats_.ForEachSite([&](const DomainStats& s) { sites.push_back(s.domain); });
  EXPECT_EQ(sites, std::vector<std::string>{kSite});
}

// A domain whose TLS policy is not the default one, with the same MX hosts as another: a site
// of its own, so its requirement holds its mail back (the peer offers no STARTTLS) while the
// other domain's goes out in plaintext over its own pool.
TEST_F(DeliveryEngineTest, ADomainThatRequiresTlsIsASiteOfItsOwnAndOnlyItsMailIsDeferred) {
  const std::string strict_site = std::string(kSite) + "+tls=required";
  options_.max_connections = 1;
  options_.tls_policy["strict.test"] = TlsMode::kRequired;
  options_.log_deliveries = true;  // the reply is in the log line
  MapRouting routing;
  routing.Set("loose.test", MakeRoute(kSite, {peer_.endpoint()}));
  routing.Set("strict.test", MakeRoute(kSite, {peer_.endpoint()}));
  StartWith(routing);
  ::testing::internal::CaptureStderr();
  EnqueueTo("loose.test", MakeJob(1, {"l1@loose.test"}));
  EnqueueTo("strict.test", MakeJob(2, {"s2@strict.test"}));
  EnqueueTo("loose.test", MakeJob(3, {"l3@loose.test"}));
  EnqueueTo("strict.test", MakeJob(4, {"s4@strict.test"}));
  const bool settled =
      RunUntil([&] { return spool_.finished().size() + spool_.deferred().size() == 4; });
  RunTurns();
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(settled) << log;

  EXPECT_EQ(spool_.finishes(1, 0), 1u);
  EXPECT_EQ(spool_.finishes(3, 0), 1u);
  ASSERT_EQ(spool_.deferred().size(), 2u);
  std::set<queue::MessageId> deferred;
  for (const FakeSpool::Deferred& d : spool_.deferred()) {
    deferred.insert(d.id);
    EXPECT_EQ(d.attempts, 1);
  }
  EXPECT_EQ(deferred, (std::set<queue::MessageId>{2, 4}));
  for (const char* rcpt : {"s2@strict.test", "s4@strict.test"}) {
    const std::string line = LogLineOf(log, rcpt);
    EXPECT_TRUE(line.starts_with("deferred ") || line.find(" deferred ") != std::string::npos)
        << line;
    EXPECT_NE(line.find("reply=\"451 4.7.4 TLS is required"), std::string::npos) << line;
    EXPECT_NE(line.find(" site=" + strict_site), std::string::npos) << line;
  }
  EXPECT_EQ(stats_.tls_unavailable.Get(), 1u) << "one connection found no STARTTLS";

  // Two pools: one connection each, the strict one over without a transaction.
  EXPECT_EQ(delivery_->sites(), 2u);
  EXPECT_EQ(peer_.accepted(), 2u);
  EXPECT_EQ(peer_.count("MAIL"), 2u);
  for (const auto& t : peer_.transactions())
    EXPECT_TRUE(t.rcpt_to.size() == 1 && t.rcpt_to[0].ends_with("@loose.test")) << t.rcpt_to[0];
  EXPECT_EQ(delivery_->open_connections(kSite), 1);  // idle, kept for more
  ASSERT_TRUE(RunUntil([&] { return delivery_->open_connections(strict_site) == 0; }));
  EXPECT_EQ(stats_.ForSite(kSite).delivered.Get(), 2u);
  EXPECT_EQ(stats_.ForSite(kSite).deferred.Get(), 0u);
  EXPECT_EQ(stats_.ForSite(strict_site).deferred.Get(), 2u);
  EXPECT_EQ(stats_.ForSite(strict_site).delivered.Get(), 0u);
  EXPECT_EQ(stats_.ForDomain("strict.test").deferred.Get(), 2u);
  EXPECT_EQ(stats_.ForDomain("loose.test").delivered.Get(), 2u);
}

// Records each job handed to another shard's site (the Dispatcher posts it to that shard).
class FakeSiteOwners final : public SiteOwners {
 public:
  struct Post {
    ShardId owner = 0;
    std::string site;
    TlsMode tls = TlsMode::kOff;
    bool own_domain = false;
    RouteRef route;
    Job job;
  };
  ShardId shards() const override { return 2; }
  void PostToSite(ShardId owner, std::string site, TlsMode tls, bool own_domain, RouteRef route,
                  Job&& job) override {
    posts.push_back({owner, std::move(site), tls, own_domain, std::move(route), std::move(job)});
  }
  std::vector<Post> posts;
};

// Of two shards, the one that does not own an MX site hands its jobs to the one that does,
// with the route it resolved (no second lookup there); a domain with a static route is a site
// of its own, delivered where it is owned.
TEST_F(DeliveryEngineTest, AJobForASiteOwnedByAnotherShardIsHandedToItWithItsRoute) {
  // The policy (not the default one) is in the site's name, and goes along.
  options_.tls_policy["mx.test"] = TlsMode::kOff;
  const std::string site = std::string(kSite) + "+tls=off";
  const ShardId owner = OwnerOf(site, 2);
  const ShardId self = owner == 0 ? 1 : 0;
  // A static domain is routed on the shard that owns it (the Dispatcher sends it there).
  std::string local;
  for (int i = 0; local.empty(); ++i) {
    const std::string d = "static" + std::to_string(i) + ".test";
    if (OwnerOf(d, 2) == self)
      local = d;
  }
  MapRouting routing;
  const RouteRef mx_route = MakeRoute(kSite, {peer_.endpoint()});
  routing.Set("mx.test", mx_route);
  routing.Set(local, MakeRoute("", {peer_.endpoint()}));
  FakeSiteOwners owners;
  StartWith(routing);
  delivery_->SetSiteOwners(&owners, self);

  EnqueueTo("mx.test", MakeJob(1, {"a@mx.test", "b@mx.test"}));
  RunTurns();
  ASSERT_EQ(owners.posts.size(), 1u);
  FakeSiteOwners::Post& post = owners.posts[0];
  EXPECT_EQ(post.owner, owner);
  EXPECT_EQ(post.site, site);
  EXPECT_EQ(post.tls, TlsMode::kOff);
  EXPECT_EQ(post.route, mx_route);
  ASSERT_NE(post.job.message, nullptr);
  EXPECT_EQ(post.job.message->id, 1u);
  EXPECT_EQ(post.job.recipients.size(), 2u);
  ASSERT_NE(post.job.body, nullptr) << "the body goes along";
  EXPECT_EQ(*post.job.body, BodyOf(1));
  EXPECT_EQ(peer_.accepted(), 0u) << "nothing connected here";
  EXPECT_EQ(delivery_->sites(), 0u);
  EXPECT_EQ(delivery_->open_connections(site), -1);
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_TRUE(spool_.deferred().empty());

  EnqueueTo(local, MakeJob(2, {"c@" + local}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(owners.posts.size(), 1u) << "the static domain stayed here";
  EXPECT_EQ(spool_.finishes(2, 0), 1u);
  EXPECT_EQ(delivery_->open_connections(local), 1);

  // The owner delivers what it was handed, over a pool of its own.
  owner_ = std::make_unique<Delivery>(*reactor_, options_, spool_, routing, stats_, 7);
  EXPECT_FALSE(post.own_domain);
  owner_->EnqueueForSite(post.site, post.tls, post.own_domain, post.route, std::move(post.job));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  EXPECT_EQ(spool_.finishes(1, 0), 1u);
  EXPECT_EQ(spool_.finishes(1, 1), 1u);
  EXPECT_EQ(owner_->open_connections(site), 1);
  EXPECT_EQ(delivery_->open_connections(site), -1);
  EXPECT_TRUE(spool_.reads().empty()) << "neither shard read a body";
  ASSERT_EQ(peer_.transactions().size(), 2u);
  EXPECT_EQ(peer_.transactions()[1].body, BodyOf(1));
}

// A site's route changes (a TTL ran out, the MX moved): its idle connection to the old address
// is quit and the next job goes to the new one. The same addresses in a new lookup's route
// (another domain's, or the same domain's again) keep the connection.
TEST_F(DeliveryEngineTest, ASiteWhoseRouteChangesQuitsItsIdleConnectionAndUsesTheNewAddress) {
  ScriptedPeer moved;
  ASSERT_TRUE(moved.ok());
  MapRouting routing;
  routing.Set(kDomain, MakeRoute(kSite, {peer_.endpoint()}));
  StartWith(routing);
  Enqueue(MakeJob(1, {Rcpt("a")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(delivery_->open_connections(kSite), 1);  // idle now

  routing.Set(kDomain, MakeRoute(kSite, {peer_.endpoint()}));
  Enqueue(MakeJob(2, {Rcpt("b")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 2; }));
  EXPECT_EQ(peer_.accepted(), 1u) << "same addresses: the idle connection was reused";
  EXPECT_EQ(peer_.count("QUIT"), 0u);

  routing.Set(kDomain, MakeRoute(kSite, {moved.endpoint()}));
  Enqueue(MakeJob(3, {Rcpt("c")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  ASSERT_TRUE(RunUntil([&] { return peer_.connections()[0].closed; }));
  EXPECT_TRUE(peer_.connections()[0].quit) << "the old connection was quit, not dropped";
  EXPECT_EQ(peer_.accepted(), 1u);
  EXPECT_EQ(peer_.transactions().size(), 2u);
  EXPECT_EQ(moved.accepted(), 1u);
  ASSERT_EQ(moved.transactions().size(), 1u);
  EXPECT_EQ(moved.transactions()[0].rcpt_to, std::vector<std::string>{Rcpt("c")});
  EXPECT_EQ(moved.transactions()[0].body, BodyOf(3));
  EXPECT_EQ(spool_.finishes(3, 0), 1u);
  ASSERT_TRUE(RunUntil([&] { return delivery_->open_connections(kSite) == 1; }));
  EXPECT_EQ(delivery_->sites(), 1u);
}

// An MX host named like a statically routed domain: the MX site and the domain's own site are
// two sites, each with its own route, and neither's mail goes to the other's host.
TEST_F(DeliveryEngineTest, AnMxHostNamedLikeAStaticDomainIsNotThatDomainsSite) {
  ScriptedPeer other;
  ASSERT_TRUE(other.ok());
  MapRouting routing;
  routing.Set("static.test", MakeRoute("", {peer_.endpoint()}));
  routing.Set("mx.test", MakeRoute("static.test", {other.endpoint()}));
  StartWith(routing);
  EnqueueTo("static.test", MakeJob(1, {"a@static.test"}));
  EnqueueTo("mx.test", MakeJob(2, {"b@mx.test"}));
  EnqueueTo("static.test", MakeJob(3, {"c@static.test"}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  EXPECT_EQ(delivery_->sites(), 2u);
  std::vector<std::string> to_peer, to_other;
  for (const auto& t : peer_.transactions())
    to_peer.insert(to_peer.end(), t.rcpt_to.begin(), t.rcpt_to.end());
  for (const auto& t : other.transactions())
    to_other.insert(to_other.end(), t.rcpt_to.begin(), t.rcpt_to.end());
  std::sort(to_peer.begin(), to_peer.end());
  EXPECT_EQ(to_peer, (std::vector<std::string>{"a@static.test", "c@static.test"}));
  EXPECT_EQ(to_other, std::vector<std::string>{"b@mx.test"});
}

// ---------------------------------------------------------------------------------------------
// Bodies

TEST_F(DeliveryEngineTest, RecoveredBodiesAreReadOnlyOnceAConnectionIsReadyAndAtMostTheLimit) {
  options_.max_connections = 4;
  options_.max_loaded_bodies = 2;
  Start();
  peer_.HoldGreeting(true);
  spool_.HoldReads(true);
  constexpr int kJobs = 8;
  for (int i = 1; i <= kJobs; ++i)
    Enqueue(MakeJob(i, {Rcpt("r" + std::to_string(i))}, /*with_body=*/false));
  ASSERT_TRUE(RunUntil([&] { return peer_.accepted() == 4; }));
  RunTurns();
  EXPECT_TRUE(spool_.reads().empty());  // connected, but no greeting and EHLO yet

  peer_.HoldGreeting(false);
  ASSERT_TRUE(RunUntil([&] { return peer_.count("EHLO") == 4 && spool_.held() == 2; }));
  RunTurns();
  EXPECT_EQ(spool_.held(), 2u);  // four connections ready, two bodies at a time
  while (spool_.finished().size() < kJobs) {
    ASSERT_TRUE(RunUntil([&] { return spool_.held() > 0 || spool_.finished().size() == kJobs; }));
    spool_.ReleaseOne();
  }
  EXPECT_EQ(spool_.max_held(), 2u);
  for (int i = 1; i <= kJobs; ++i) {
    EXPECT_EQ(spool_.reads_of(i), 1u) << "message " << i;
    EXPECT_EQ(spool_.finishes(i, 0), 1u) << "message " << i;
  }
  for (const auto& t : peer_.transactions()) {
    ASSERT_EQ(t.rcpt_to.size(), 1u);
    EXPECT_EQ(t.body, BodyOf(std::stoi(t.rcpt_to[0].substr(1))));
  }
}

TEST_F(DeliveryEngineTest, FailedBodyReadRetriesTheJobLater) {
  Start();
  spool_.FailNextRead(4);
  Enqueue(MakeJob(4, {Rcpt("r")}, /*with_body=*/false));
  ASSERT_TRUE(RunUntil([&] { return spool_.reads().size() == 1 && delivery_->scheduled() == 1; }));
  RunTurns();
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_TRUE(spool_.deferred().empty());
  EXPECT_EQ(peer_.count("MAIL"), 0u);

  Advance(61s);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(spool_.reads_of(4), 2u);
  ASSERT_EQ(peer_.transactions().size(), 1u);
  EXPECT_EQ(peer_.transactions()[0].body, BodyOf(4));
}

// A body read that fails after the engine was shut down: the job stays in the spool for the next
// start, as every other job then, and is not scheduled again (nor sent a minute later).
TEST_F(DeliveryEngineTest, FailedBodyReadAfterShutdownSchedulesNothing) {
  Start();
  spool_.HoldReads(true);
  spool_.FailNextRead(4);
  Enqueue(MakeJob(4, {Rcpt("r")}, /*with_body=*/false));
  ASSERT_TRUE(RunUntil([&] { return spool_.held() == 1; }));
  RunTurns();
  const size_t connections = peer_.accepted();

  delivery_->Shutdown();
  ASSERT_TRUE(spool_.ReleaseOne());
  RunTurns();
  EXPECT_EQ(delivery_->scheduled(), 0u);
  Advance(61s);
  RunTurns();
  EXPECT_EQ(spool_.reads_of(4), 1u);
  EXPECT_EQ(peer_.accepted(), connections);
  EXPECT_EQ(peer_.count("MAIL"), 0u);
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_TRUE(spool_.deferred().empty());
}

// The shard's body budget, for all its sites: bodies of fresh jobs past it are let go of and
// read again once a connection is ready; within it, none is read.
TEST_F(DeliveryEngineTest, FreshBodiesPastTheShardsBudgetAreReadAgainFromTheSpool) {
  const size_t body = BodyOf(1).size();  // ids 1-9: all the same size
  options_.max_body_bytes = 4 * body;
  options_.max_connections = 1;
  Start();  // every domain a site of its own, to the peer
  peer_.HoldGreeting(true);
  for (int i = 1; i <= 3; ++i)
    EnqueueTo("a.test", MakeJob(i, {"r" + std::to_string(i) + "@a.test"}));
  for (int i = 4; i <= 6; ++i)
    EnqueueTo("b.test", MakeJob(i, {"r" + std::to_string(i) + "@b.test"}));
  ASSERT_TRUE(RunUntil([&] { return peer_.accepted() == 2; }));
  RunTurns();
  EXPECT_EQ(delivery_->sites(), 2u);
  EXPECT_TRUE(spool_.reads().empty()) << "no connection is ready yet";

  peer_.HoldGreeting(false);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 6; }));
  // Four bodies fit: a.test's three and b.test's first; b.test's other two were read again.
  for (int i = 1; i <= 4; ++i)
    EXPECT_EQ(spool_.reads_of(i), 0u) << "message " << i;
  EXPECT_EQ(spool_.reads_of(5), 1u);
  EXPECT_EQ(spool_.reads_of(6), 1u);
  ASSERT_EQ(peer_.transactions().size(), 6u);
  for (const auto& t : peer_.transactions()) {
    ASSERT_EQ(t.rcpt_to.size(), 1u);
    EXPECT_EQ(t.body, BodyOf(std::stoi(t.rcpt_to[0].substr(1))));
  }

  // Sent bodies leave the budget: fresh jobs fit again.
  for (int i = 7; i <= 9; ++i)
    EnqueueTo("b.test", MakeJob(i, {"r" + std::to_string(i) + "@b.test"}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 9; }));
  EXPECT_EQ(spool_.reads().size(), 2u);
}

// The jobs of one message to several domains, as recovery makes them: the recipient at
// position `p` of `whole`'s message, for its domain.
Job JobOf(const Job& whole, uint32_t p) {
  Job job;
  job.message = whole.message;
  job.recipients.push_back({p, 0});
  return job;
}

// A message to three domains read for each of the three sites at once: the reads that end
// after the first take its buffer (the same text for every destination, read once into
// memory), not their own.
TEST_F(DeliveryEngineTest, ReadsOfOneBodyForSeveralSitesEndInTheFirstOnesBuffer) {
  options_.max_connections = 1;
  Start();  // every domain a site of its own, to the peer
  spool_.HoldReads(true);
  const Job whole = MakeJob(11, {"x@a.test", "y@b.test", "z@c.test"}, /*with_body=*/false);
  EnqueueTo("a.test", JobOf(whole, 0));
  EnqueueTo("b.test", JobOf(whole, 1));
  EnqueueTo("c.test", JobOf(whole, 2));
  ASSERT_TRUE(RunUntil([&] { return spool_.held() == 3; }));
  ASSERT_TRUE(spool_.ReleaseOne());
  // The spool's text changes under the next two reads: a site that used its own read would
  // send this.
  spool_.SetBody(11, "Subject: read again\r\n\r\nnot the first read\r\n");
  ASSERT_TRUE(spool_.ReleaseOne());
  ASSERT_TRUE(spool_.ReleaseOne());
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  ASSERT_EQ(peer_.transactions().size(), 3u);
  for (const auto& t : peer_.transactions())
    EXPECT_EQ(t.body, BodyOf(11)) << t.rcpt_to[0];
  EXPECT_EQ(spool_.reads_of(11), 3u);
}

// While one domain's job holds the body (here a.test's, loaded and waiting behind a
// transaction in flight), another domain's job of the same message takes it without a read.
// Once every job let go, a later read goes to the spool again.
TEST_F(DeliveryEngineTest, ABodyAnotherSitesJobHoldsIsNotReadAgain) {
  options_.max_connections = 1;
  Start();
  peer_.HoldDataEnd(true);
  EnqueueTo("a.test", MakeJob(10, {"p@a.test"}));
  ASSERT_TRUE(RunUntil([&] { return peer_.count(".") == 1; }));  // a.test's one connection waits
  const Job whole = MakeJob(11, {"x@a.test", "y@b.test"}, /*with_body=*/false);
  EnqueueTo("a.test", JobOf(whole, 0));
  ASSERT_TRUE(RunUntil([&] { return spool_.reads_of(11) == 1; }));
  RunTurns();
  EnqueueTo("b.test", JobOf(whole, 1));
  ASSERT_TRUE(RunUntil([&] { return peer_.count(".") == 2; }));  // b.test's data went out
  EXPECT_EQ(spool_.reads_of(11), 1u) << "b.test read the body a.test's job holds";
  peer_.HoldDataEnd(false);
  peer_.ReleaseDataEnds(10);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  for (const auto& t : peer_.transactions())
    EXPECT_EQ(t.body, BodyOf(t.rcpt_to[0] == "p@a.test" ? 10 : 11)) << t.rcpt_to[0];
  EXPECT_EQ(spool_.reads_of(11), 1u);

  // Nothing holds it now: a retry of the message reads it again.
  EnqueueTo("b.test", JobOf(whole, 1));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 4; }));
  EXPECT_EQ(spool_.reads_of(11), 2u);
}

TEST_F(DeliveryEngineTest, FreshBodiesWithinTheShardsBudgetAreNeverReadFromTheSpool) {
  options_.max_connections = 1;
  Start();
  peer_.HoldGreeting(true);
  for (int i = 1; i <= 6; ++i) {
    EnqueueTo(i <= 3 ? "a.test" : "b.test",
              MakeJob(i, {"r" + std::to_string(i) + (i <= 3 ? "@a.test" : "@b.test")}));
  }
  ASSERT_TRUE(RunUntil([&] { return peer_.accepted() == 2; }));
  peer_.HoldGreeting(false);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 6; }));
  EXPECT_TRUE(spool_.reads().empty());
  ASSERT_EQ(peer_.transactions().size(), 6u);
  for (const auto& t : peer_.transactions()) {
    ASSERT_EQ(t.rcpt_to.size(), 1u);
    EXPECT_EQ(t.body, BodyOf(std::stoi(t.rcpt_to[0].substr(1))));
  }
}

// ---------------------------------------------------------------------------------------------
// Time

TEST_F(DeliveryEngineTest, IdleConnectionQuitsAfterIdleTimeoutAndTheDestinationIsForgotten) {
  options_.idle_timeout = Seconds(5);
  Start();
  Enqueue(MakeJob(1, {Rcpt("a")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(delivery_->open_connections(kDomain), 1);

  Advance(4900ms);
  RunTurns();
  EXPECT_FALSE(peer_.connections()[0].quit);
  EXPECT_EQ(delivery_->open_connections(kDomain), 1);
  Advance(200ms);
  ASSERT_TRUE(RunUntil([&] { return peer_.count("QUIT") == 1; }));
  ASSERT_TRUE(RunUntil([&] { return delivery_->open_connections(kDomain) == 0; }));
  EXPECT_EQ(peer_.connections()[0].transactions.size(), 1u);
  EXPECT_EQ(delivery_->sites(), 1u);

  Advance(5s);
  RunTurns();
  Advance(5s);
  RunTurns();
  EXPECT_EQ(delivery_->sites(), 0u);
  EXPECT_EQ(delivery_->open_connections(kDomain), -1);

  // Mail for it again: a new destination, a new connection, delivered.
  Enqueue(MakeJob(2, {Rcpt("b")}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 2; }));
  EXPECT_EQ(spool_.finishes(2, 0), 1u);
  EXPECT_EQ(peer_.accepted(), 2u);
  EXPECT_EQ(delivery_->sites(), 1u);
}

TEST_F(DeliveryEngineTest, JobDueInTheFutureWaitsInTheSchedulerUntilThen) {
  Start();
  Job job = MakeJob(6, {Rcpt("a")});
  job.due_ms = clock_.WallMs() + 30000;
  Enqueue(std::move(job));
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_EQ(delivery_->sites(), 0u);

  Advance(29900ms);
  RunTurns();
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_EQ(peer_.accepted(), 0u);
  Advance(std::chrono::milliseconds(100 + Scheduler::kGranularityMs));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(delivery_->scheduled(), 0u);
  EXPECT_EQ(spool_.reads(), std::vector<queue::MessageId>{6});  // let go of while it waited
  ASSERT_EQ(peer_.transactions().size(), 1u);
  EXPECT_EQ(peer_.transactions()[0].body, BodyOf(6));
}

// ---------------------------------------------------------------------------------------------
// Operators' controls (controls.h): suspend, resume, bounce

// A suspended domain's mail waits in the scheduler, counted as queued, with no connection; a
// resume sends it at once.
TEST_F(DeliveryEngineTest, ASuspendedDomainIsHeldUntilResumedThenDelivered) {
  Start();
  Controls controls;
  delivery_->SetControls(&controls);
  controls.Set({Control::Action::kSuspend, Control::Scope::kDomain, kDomain, "maintenance",
                clock_.WallMs(), 0});
  Enqueue(MakeJob(31, {Rcpt("a"), Rcpt("b")}));
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 0u);
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_EQ(domain_stats().queued.Get(), 2);
  Advance(30min);  // an hour's hold is looked at again after the hour; not yet
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 0u);

  ASSERT_TRUE(controls.Lift(Control::Action::kSuspend, Control::Scope::kDomain, kDomain));
  EXPECT_EQ(delivery_->ReleaseHeld(), 1u);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 2; }));
  EXPECT_EQ(domain_stats().queued.Get(), 0);
  EXPECT_EQ(domain_stats().in_flight.Get(), 0);
  EXPECT_TRUE(spool_.deferred().empty()) << "a hold is no attempt";
}

// A suspension with an end lets the mail go by itself then; one of another campaign holds
// nothing of this one.
TEST_F(DeliveryEngineTest, ASuspensionWithAnEndReleasesTheMailAtItsEnd) {
  Start();
  Controls controls;
  delivery_->SetControls(&controls);
  const int64_t now = clock_.WallMs();
  controls.Set(
      {Control::Action::kSuspend, Control::Scope::kCampaign, "spring", "", now, now + 60000});
  controls.Set({Control::Action::kSuspend, Control::Scope::kCampaign, "autumn", "", now, 0});
  Job job = MakeJob(32, {Rcpt("a")});
  auto m = std::make_shared<Message>(*job.message);
  m->campaign = "spring";
  job.message = m;
  Enqueue(std::move(job));
  Enqueue(MakeJob(33, {Rcpt("b")}));  // no campaign: not held
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 1; }));
  EXPECT_EQ(spool_.finishes(33, 0), 1u);
  EXPECT_EQ(delivery_->scheduled(), 1u);
  EXPECT_EQ(stats_.ForCampaign("spring").queued.Get(), 1);
  Advance(61s);
  ASSERT_TRUE(RunUntil([&] { return spool_.finishes(32, 0) == 1; }));
  EXPECT_EQ(stats_.ForCampaign("spring").queued.Get(), 0);
}

// A site suspended while mail waits in its queue: that mail is taken out and held; what comes
// later is held on arrival.
TEST_F(DeliveryEngineTest, ASiteSuspendedWithMailQueuedHoldsItAll) {
  peer_.HoldGreeting(true);  // the connection is not ready: the job waits in the queue
  Start();
  Controls controls;
  delivery_->SetControls(&controls);
  Enqueue(MakeJob(34, {Rcpt("a")}));
  RunTurns(2);
  controls.Set({Control::Action::kSuspend, Control::Scope::kSite, kDomain, "", clock_.WallMs(), 0});
  EXPECT_EQ(delivery_->ApplyControls(), 0u) << "nothing bounced";
  Enqueue(MakeJob(35, {Rcpt("b")}));
  peer_.HoldGreeting(false);  // the connection is ready now, and finds nothing to send
  RunTurns(40);
  EXPECT_TRUE(peer_.transactions().empty());
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_EQ(delivery_->scheduled(), 2u);
  controls.Lift(Control::Action::kSuspend, Control::Scope::kSite, kDomain);
  EXPECT_EQ(delivery_->ReleaseHeld(), 2u);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 2; }));
}

// An operator's bounce of a campaign fails its queued mail, deferred or waiting, with
// AdminBounce records and one DSN per message, and puts nobody on the suppression list; mail of
// other campaigns goes on.
TEST_F(DeliveryEngineTest, ACampaignBounceFailsItsQueuedMailWithAdminBounceRecordsAndDsns) {
  options_.dsn = true;
  options_.retry_base = Seconds(600);
  Start();
  Controls controls;
  delivery_->SetControls(&controls);
  KeptRecords records;
  delivery_->SetAccounting(&records);
  const std::string later = Rcpt("later");
  peer_.ScriptRcpt(later, {"451 4.3.0 try again"});
  auto with_campaign = [&](Job job, const std::string& campaign) {
    auto m = std::make_shared<Message>(*job.message);
    m->campaign = campaign;
    job.message = m;
    return job;
  };
  Enqueue(with_campaign(MakeJob(36, {later}), "spam-run"));
  ASSERT_TRUE(RunUntil([&] { return delivery_->scheduled() == 1; }));  // deferred
  const int64_t now = clock_.WallMs();
  controls.Set({Control::Action::kBounce, Control::Scope::kCampaign, "spam-run", "sent by mistake",
                now, now + 300000});
  EXPECT_EQ(delivery_->ApplyControls(), 1u);
  EXPECT_EQ(delivery_->scheduled(), 0u);
  Enqueue(with_campaign(MakeJob(37, {Rcpt("x"), Rcpt("y")}), "spam-run"));
  Enqueue(with_campaign(MakeJob(38, {Rcpt("z")}), "newsletter"));
  ASSERT_TRUE(RunUntil([&] { return spool_.injected().size() == 2 && spool_.finishes(38, 0); }));
  RunTurns();
  const auto admin = records.Of("AdminBounce");
  ASSERT_EQ(admin.size(), 3u);
  for (const auto& r : admin) {
    EXPECT_EQ(r["campaign"], "spam-run");
    EXPECT_EQ(r["reply"]["code"], 550);
    EXPECT_NE(r["reply"]["text"].get<std::string>().find("sent by mistake"), std::string::npos);
  }
  EXPECT_TRUE(records.Of("Bounce").empty());
  EXPECT_EQ(records.Of("Delivery").size(), 1u);  // the newsletter's
  EXPECT_TRUE(spool_.suppressed().empty());
  for (const queue::NewMessage& dsn : spool_.injected()) {
    EXPECT_EQ(dsn.rcpt_to, std::vector<std::string>{"sender@origin.test"});
    EXPECT_NE(dsn.body.find("Action: failed"), std::string::npos);
    EXPECT_NE(dsn.body.find("administrative bounce: sent by mistake"), std::string::npos);
  }
  EXPECT_EQ(spool_.finishes(36, 0), 1u);
  EXPECT_EQ(stats_.ForCampaign("spam-run").queued.Get(), 0);
  EXPECT_EQ(stats_.ForCampaign("spam-run").failed.Get(), 3u);
}

// ---------------------------------------------------------------------------------------------
// Shutdown

TEST_F(DeliveryEngineTest, ShutdownDropsQueuesAndConnectionsAndRecordsNoOutcome) {
  options_.max_connections = 1;
  Start();
  peer_.HoldDataEnd(true);  // the first transaction stays in flight
  for (int i = 1; i <= 3; ++i)
    Enqueue(MakeJob(i, {Rcpt("r" + std::to_string(i))}));
  Job later = MakeJob(4, {Rcpt("r4")});
  later.due_ms = clock_.WallMs() + 60000;
  Enqueue(std::move(later));
  ASSERT_TRUE(RunUntil([&] { return peer_.count(".") == 1; }));
  EXPECT_EQ(delivery_->scheduled(), 1u);

  delivery_->Shutdown();
  ASSERT_TRUE(RunUntil([&] { return delivery_->open_connections(kDomain) <= 0; }));
  peer_.HoldDataEnd(false);
  ASSERT_TRUE(RunUntil([&] { return peer_.connections()[0].closed; }));
  Advance(61s);
  RunTurns();

  // Nothing recorded: every recipient is still pending in the spool for the next start. The
  // transaction cut off was no attempt (no server refused it): not counted as deferred either.
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_TRUE(spool_.deferred().empty());
  EXPECT_EQ(domain_stats().deferred.Get(), 0u);
  EXPECT_EQ(domain_stats().delivered.Get(), 0u);
  EXPECT_EQ(delivery_->scheduled(), 0u);
  EXPECT_FALSE(peer_.connections()[0].quit);  // dropped, not ended politely
  EXPECT_EQ(peer_.accepted(), 1u);
  // Mail that arrives now is left for the next start too.
  Enqueue(MakeJob(5, {Rcpt("r5")}));
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 1u);
  EXPECT_TRUE(spool_.finished().empty());
}

// ---------------------------------------------------------------------------------------------
// Shaping (delivery/shaping.h, delivery/adaptive.h): per-site limits from a shaping file

// A shaping file as the daemon reads it; one refused, or with a warning, fails the test (null).
std::shared_ptr<const Shaping> LoadShaping(const std::string& toml) {
  std::string error;
  std::vector<std::string> warnings;
  std::optional<Shaping> s = Shaping::FromToml(toml, &error, &warnings);
  EXPECT_TRUE(s.has_value()) << error;
  for (const std::string& w : warnings)
    ADD_FAILURE() << "warning: " << w;
  if (!s)
    return nullptr;
  return std::make_shared<const Shaping>(std::move(*s));
}

// A domain table's connection_limit, under a larger max_connections, against a peer that
// answers each end of data only when told (one at a time): never a third connection, and all
// twenty delivered over the two. The domain with a table of its own is a site of its own, not
// its MX host set's.
TEST_F(DeliveryEngineTest, AShapingConnectionLimitOfTwoHoldsForTwentyJobsToASlowPeer) {
  options_.max_connections = 10;
  MapRouting routing;
  routing.Set("x.test", MakeRoute(kSite, {peer_.endpoint()}));
  StartWith(routing);
  std::shared_ptr<const Shaping> shaping = LoadShaping("[\"x.test\"]\nconnection_limit = 2\n");
  ASSERT_NE(shaping, nullptr);
  delivery_->SetShaping(shaping);
  peer_.HoldDataEnd(true);
  long most_open = 0;
  each_turn_ = [&] { most_open = std::max(most_open, delivery_->open_connections("x.test")); };
  constexpr int kJobs = 20;
  for (int i = 1; i <= kJobs; ++i)
    EnqueueTo("x.test", MakeJob(i, {"u" + std::to_string(i) + "@x.test"}));
  most_open = std::max(most_open, delivery_->open_connections("x.test"));
  ASSERT_TRUE(RunUntil([&] { return peer_.count(".") == 2; }));
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 2u) << "18 jobs wait, and still no third connection";
  EXPECT_EQ(delivery_->open_connections("x.test"), 2);
  EXPECT_EQ(delivery_->open_connections(kSite), -1) << "x.test has a table: a site of its own";
  EXPECT_EQ(stats_.ForSite("x.test").connection_limit.Get(), 2);

  for (int k = 1; k <= kJobs; ++k) {
    peer_.ReleaseDataEnds(1);
    ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == static_cast<size_t>(k); }))
        << "reply " << k;
    most_open = std::max(most_open, delivery_->open_connections("x.test"));
  }
  EXPECT_LE(most_open, 2);
  EXPECT_LE(peer_.max_concurrent(), 2u);
  EXPECT_EQ(peer_.accepted(), 2u) << "the two connections carried every message";
  EXPECT_EQ(peer_.transactions().size(), static_cast<size_t>(kJobs));
  for (int i = 1; i <= kJobs; ++i)
    EXPECT_EQ(spool_.finishes(i, 0), 1u) << "message " << i;
  EXPECT_TRUE(spool_.deferred().empty());
  EXPECT_EQ(stats_.ForSite("x.test").delivered.Get(), static_cast<uint64_t>(kJobs));
}

// ["default"] max_deliveries_per_connection under a larger max_messages_per_connection: every
// connection QUITs after its third message, so ten messages take at least four connections.
TEST_F(DeliveryEngineTest, AShapingMaxDeliveriesPerConnectionOfThreeQuitsAfterTheThird) {
  options_.max_messages_per_connection = 100;
  Start();
  std::shared_ptr<const Shaping> shaping =
      LoadShaping("[\"default\"]\nconnection_limit = 2\nmax_deliveries_per_connection = 3\n");
  ASSERT_NE(shaping, nullptr);
  delivery_->SetShaping(shaping);
  constexpr int kJobs = 10;
  for (int i = 1; i <= kJobs; ++i)
    Enqueue(MakeJob(i, {Rcpt("m" + std::to_string(i))}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == kJobs; }));
  // The QUIT after a third message goes out once its reply is read: the peer sees it soon.
  ASSERT_TRUE(RunUntil([&] {
    for (const auto& c : peer_.connections()) {
      if (c.transactions.size() >= 3 && !c.quit)
        return false;
    }
    return true;
  }));
  EXPECT_EQ(stats_.ForSite(kDomain).deliveries_per_connection.Get(), 3);

  const auto conns = peer_.connections();
  EXPECT_GE(conns.size(), 4u);
  size_t carried = 0;
  for (size_t c = 0; c < conns.size(); ++c) {
    EXPECT_LE(conns[c].transactions.size(), 3u) << "connection " << c;
    carried += conns[c].transactions.size();
    if (conns[c].transactions.size() == 3) {
      // QUIT right after the third end of data.
      ASSERT_GE(conns[c].commands.size(), 2u);
      EXPECT_EQ(conns[c].commands.back(), "QUIT") << "connection " << c;
      EXPECT_EQ(conns[c].commands[conns[c].commands.size() - 2], ".") << "connection " << c;
    }
  }
  EXPECT_EQ(carried, static_cast<size_t>(kJobs));
  EXPECT_LE(peer_.max_concurrent(), 2u);
  for (int i = 1; i <= kJobs; ++i)
    EXPECT_EQ(spool_.finishes(i, 0), 1u) << "message " << i;
}

// A domain table's max_recipients_per_batch, under a larger max_recipients_per_transaction:
// five recipients go in three transactions, 2 + 2 + 1, each recipient once, the same body.
TEST_F(DeliveryEngineTest, AShapingMaxRecipientsPerBatchOfTwoSendsFiveInThreeTransactions) {
  options_.max_recipients_per_transaction = 100;
  Start();
  std::shared_ptr<const Shaping> shaping =
      LoadShaping("[\"x.test\"]\nmax_recipients_per_batch = 2\n");
  ASSERT_NE(shaping, nullptr);
  delivery_->SetShaping(shaping);
  std::vector<std::string> rcpts;
  for (int i = 0; i < 5; ++i)
    rcpts.push_back("r" + std::to_string(i) + "@x.test");
  EnqueueTo("x.test", MakeJob(9, rcpts));
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 5; }));
  EXPECT_EQ(stats_.ForSite("x.test").recipients_per_batch.Get(), 2);

  const auto txns = peer_.transactions();
  ASSERT_EQ(txns.size(), 3u);
  std::multiset<size_t> sizes;
  std::multiset<std::string> seen;
  for (const auto& t : txns) {
    sizes.insert(t.rcpt_to.size());
    seen.insert(t.rcpt_to.begin(), t.rcpt_to.end());
    EXPECT_EQ(t.body, BodyOf(9));
  }
  EXPECT_EQ(sizes, (std::multiset<size_t>{1, 2, 2}));
  EXPECT_EQ(seen, std::multiset<std::string>(rcpts.begin(), rcpts.end()));
  for (uint32_t i = 0; i < 5; ++i)
    EXPECT_EQ(spool_.finishes(9, i), 1u) << "recipient " << i;
  EXPECT_TRUE(spool_.deferred().empty());
}

// A Suspend rule on "[TS01]": the server's 421 to a RCPT fires it. The site is suspended (and
// counted so), opens nothing while it is, and its mail waits queued; the recipient the 421
// deferred is not charged an attempt. After the suspension (and the 421's own hold) the mail
// that waited goes out, and the deferred recipient is delivered at its retry.
TEST_F(DeliveryEngineTest, ASuspendRuleHoldsTheSiteOffAndTheThrottledRecipientIsNotCharged) {
  options_.retry_base = Seconds(60);
  MapRouting routing;
  routing.Set("x.test", MakeRoute(kSite, {peer_.endpoint()}));
  StartWith(routing);
  std::shared_ptr<const Shaping> shaping = LoadShaping(
      "[\"x.test\"]\n"                // line 1
      "connection_limit = 1\n"        // line 2
      "[[\"x.test\".automation]]\n"   // line 3: the rule's label is x.test:3
      "regex = \"\\\\[TS01\\\\]\"\n"  // regex = "\\[TS01\\]"
      "action = \"Suspend\"\n"
      "duration = \"2s\"\n");
  ASSERT_NE(shaping, nullptr);
  delivery_->SetShaping(shaping);
  const std::string a = "a@x.test";
  peer_.ScriptRcpt(a, {"421 4.7.0 [TS01] deferred"});
  long most_open = 0;
  each_turn_ = [&] { most_open = std::max(most_open, delivery_->open_connections("x.test")); };
  EnqueueTo("x.test", MakeJob(1, {a}));
  for (int i = 2; i <= 4; ++i)
    EnqueueTo("x.test", MakeJob(i, {"u" + std::to_string(i) + "@x.test"}));
  ASSERT_TRUE(RunUntil(
      [&] { return spool_.deferred().size() == 1 && delivery_->open_connections("x.test") == 0; }));
  RunTurns();

  DomainStats& site = stats_.ForSite("x.test");
  EXPECT_EQ(site.suspended.Get(), 1);
  EXPECT_EQ(site.suspensions.Get(), 1u);
  RuleStats& rule = stats_.ForRule("x.test", "x.test:3");
  EXPECT_EQ(rule.fired.Get(), 1u);
  EXPECT_EQ(rule.active.Get(), 1);
  ASSERT_EQ(spool_.deferred().size(), 1u);
  EXPECT_EQ(spool_.deferred()[0].id, 1u);
  EXPECT_EQ(spool_.deferred()[0].index, 0u);
  EXPECT_EQ(spool_.deferred()[0].attempts, 0) << "a rate-limit reply charges no attempt";
  EXPECT_TRUE(spool_.finished().empty());
  EXPECT_EQ(peer_.accepted(), 1u);
  ASSERT_EQ(peer_.connections()[0].transactions.size(), 1u);
  EXPECT_EQ(peer_.connections()[0].transactions[0].rcpt_to, std::vector<std::string>{a});
  EXPECT_EQ(site.queued_by_priority[9].Get(), 3) << "the other three wait in the site's queue";

  // Suspended: no connection, however long the mail waits within the rule's duration.
  Advance(1900ms);
  RunTurns();
  EXPECT_EQ(peer_.accepted(), 1u);
  EXPECT_EQ(site.suspended.Get(), 1);
  EXPECT_TRUE(spool_.finished().empty());

  // The suspension is over at 2 s; the 421 holds the site off until Site::kPushbackHold.
  Advance(200ms);
  ASSERT_TRUE(RunUntil([&] { return site.suspended.Get() == 0; }));
  Advance(std::chrono::duration_cast<std::chrono::nanoseconds>(Site::kPushbackHold) - 2100ms +
          100ms);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 3; }));
  for (int i = 2; i <= 4; ++i)
    EXPECT_EQ(spool_.finishes(i, 0), 1u) << "message " << i;
  EXPECT_EQ(peer_.accepted(), 2u);
  EXPECT_EQ(most_open, 1);
  EXPECT_EQ(site.suspended.Get(), 0);
  EXPECT_EQ(site.suspensions.Get(), 1u);
  EXPECT_EQ(rule.fired.Get(), 1u);
  EXPECT_EQ(site.queued_by_priority[9].Get(), 0);
  EXPECT_EQ(spool_.deferred().size(), 1u);

  // The deferred recipient at its retry (retry_base + 20% at most), the rule ended by then.
  Advance(73s);
  ASSERT_TRUE(RunUntil([&] { return spool_.finished().size() == 4; }));
  EXPECT_EQ(spool_.finishes(1, 0), 1u);
  EXPECT_EQ(rule.active.Get(), 0);
  EXPECT_EQ(rule.fired.Get(), 1u);
}

// A Bounce rule on "[TS02]": the recipient whose reply fired it, the mail queued behind it
// and mail that comes while it holds all fail, with a 5xx that names the rule.
TEST_F(DeliveryEngineTest, ABounceRuleFailsTheMatchingRecipientAndTheQueuedOnesWithA5xx) {
  options_.dsn = false;  // a failure leaves the spool at once
  MapRouting routing;
  routing.Set("x.test", MakeRoute(kSite, {peer_.endpoint()}));
  StartWith(routing);
  KeptRecords records;
  delivery_->SetAccounting(&records);
  std::shared_ptr<const Shaping> shaping = LoadShaping(
      "[\"x.test\"]\n"
      "connection_limit = 1\n"
      "[[\"x.test\".automation]]\n"  // line 3: x.test:3
      "regex = \"\\\\[TS02\\\\]\"\n"
      "action = \"Bounce\"\n"
      "duration = \"1h\"\n");
  ASSERT_NE(shaping, nullptr);
  delivery_->SetShaping(shaping);
  const std::string a = "a@x.test";
  peer_.ScriptRcpt(a, {"451 4.7.1 [TS02] Messages from 192.0.2.1 temporarily deferred"});
  EnqueueTo("x.test", MakeJob(1, {a}));
  for (int i = 2; i <= 4; ++i)
    EnqueueTo("x.test", MakeJob(i, {"u" + std::to_string(i) + "@x.test"}));
  ASSERT_TRUE(RunUntil([&] {
    return spool_.finishes(2, 0) == 1 && spool_.finishes(3, 0) == 1 && spool_.finishes(4, 0) == 1;
  }));
  RunTurns();
  EXPECT_EQ(stats_.ForRule("x.test", "x.test:3").fired.Get(), 1u);
  EXPECT_EQ(peer_.transactions().size(), 0u) << "nothing was delivered";
  EXPECT_EQ(peer_.count("MAIL"), 1u) << "one transaction, the one whose reply fired the rule";

  // Mail that comes while the rule holds fails at once, without a transaction.
  EnqueueTo("x.test", MakeJob(5, {"u5@x.test"}));
  ASSERT_TRUE(RunUntil([&] { return spool_.finishes(5, 0) == 1; }));
  EXPECT_EQ(peer_.count("MAIL"), 1u);

  std::map<std::string, nlohmann::json> bounce_of;
  for (const nlohmann::json& b : records.Of("Bounce"))
    bounce_of[b["recipient"]] = b;
  for (const char* rcpt : {"u2@x.test", "u3@x.test", "u4@x.test", "u5@x.test"}) {
    ASSERT_TRUE(bounce_of.count(rcpt)) << rcpt << " has no Bounce record";
    const nlohmann::json& reply = bounce_of[rcpt]["reply"];
    EXPECT_EQ(reply["code"].get<int>() / 100, 5) << rcpt << ": " << reply;
    EXPECT_NE(reply["text"].get<std::string>().find("x.test:3"), std::string::npos)
        << rcpt << ": " << reply;
  }
  EXPECT_EQ(stats_.ForSite("x.test").failed.Get(), 5u) << "a and the four behind it";

  // The recipient whose reply fired the rule fails too, with the same 5xx, at once: it is
  // neither deferred to a retry nor left out.
  EXPECT_EQ(spool_.finishes(1, 0), 1u) << "the matching recipient did not fail";
  EXPECT_TRUE(spool_.deferred().empty()) << "the matching recipient was deferred instead";
  ASSERT_TRUE(bounce_of.count(a)) << a << " has no Bounce record";
  EXPECT_EQ(bounce_of[a]["reply"]["code"].get<int>() / 100, 5) << bounce_of[a];
  EXPECT_NE(bounce_of[a]["reply"]["text"].get<std::string>().find("x.test:3"), std::string::npos)
      << bounce_of[a];
}

}  // namespace
}  // namespace spate::delivery
