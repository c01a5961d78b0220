// core/redis: the Client on a real io_uring reactor against a real redis-server (Debian's) on
// a free loopback port, started by the test: commands answered in order, pipelined; Redis's
// error replies; a server that goes away fails what is out and refuses more at once, and the
// client connects again when it is back; a server that stops answering is dropped after the
// command timeout.
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/connection.h"
#include "core/reactor.h"
#include "core/redis/client.h"

namespace spate::redis {
namespace {

using namespace std::chrono_literals;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class RedisServer {
 public:
  explicit RedisServer(int port, std::string password = "")
      : port_(port), password_(std::move(password)) {
    Start();
  }
  ~RedisServer() { Kill(); }
  void Start() {
    pid_ = fork();
    if (pid_ == 0) {
      const std::string p = std::to_string(port_);
      if (password_.empty()) {
        execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--logfile", "/dev/null", nullptr);
      } else {
        execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--logfile", "/dev/null", "--requirepass",
               password_.c_str(), nullptr);
      }
      _exit(127);
    }
    // Ready once it accepts.
    for (int i = 0; i < 200; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      close(fd);
      if (ok)
        return;
      usleep(20000);
    }
  }
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  void Stop() {  // SIGSTOP: the socket stays, nothing answers
    kill(pid_, SIGSTOP);
  }
  void Continue() { kill(pid_, SIGCONT); }

 private:
  int port_;
  std::string password_;
  pid_t pid_ = -1;
};

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Reactor::Create(64);
    ASSERT_TRUE(r.has_value());
    reactor_ = std::move(r).value();
    socklen_t len = 0;
    const std::string text = "127.0.0.1:" + std::to_string(port_);
    auto addr = ParseEndpoint(text, &len);
    ASSERT_TRUE(addr.has_value());
    options_.server.text = text;
    options_.server.addr = *addr;
    options_.server.len = len;
    options_.command_timeout = Seconds(0.5);
    options_.connect_timeout = Seconds(0.5);
    options_.reconnect_interval = Seconds(0.1);
  }

  // Turns the loop until `done` or a real-time bound.
  bool RunUntil(const std::function<bool()>& done, std::chrono::milliseconds bound = 10s) {
    const auto end = std::chrono::steady_clock::now() + bound;
    while (!done() && std::chrono::steady_clock::now() < end)
      reactor_->RunOnce(reactor_->now() + 10ms);
    return done();
  }

  struct Answer {
    bool ok = false;
    Reply reply;
    std::string error;
  };
  std::vector<Answer> answers_;
  Client::Done Keep() {
    return [this](bool ok, Reply reply, const std::string& error) {
      answers_.push_back({ok, std::move(reply), error});
    };
  }

  int port_ = FreePort();
  RedisServer server_{port_};
  std::unique_ptr<Reactor> reactor_;
  Client::Options options_;
};

TEST_F(RedisClientTest, CommandsArePipelinedAndAnsweredInOrder) {
  std::vector<bool> states;
  Client c(*reactor_, options_, [&](bool up, const std::string&) { states.push_back(up); });
  c.Start();
  ASSERT_TRUE(RunUntil([&] { return c.up(); }));
  c.Command({"SET", "k", "v\r\n with CRLF"}, Keep());
  c.Command({"GET", "k"}, Keep());
  c.Command({"INCRBY", "n", "41"}, Keep());
  c.Command({"INCR", "n"}, Keep());
  c.Command({"GET", "missing"}, Keep());
  c.Command({"RPUSH", "l", "a", "b"}, Keep());
  c.Command({"LRANGE", "l", "0", "-1"}, Keep());
  c.Command({"HSET", "h"}, Keep());  // wrong number of arguments: Redis's error
  ASSERT_TRUE(RunUntil([&] { return answers_.size() == 8; }));
  for (const Answer& a : answers_)
    EXPECT_TRUE(a.ok) << a.error;
  EXPECT_EQ(answers_[0].reply.type, Reply::Type::kStatus);
  EXPECT_EQ(answers_[1].reply.str, "v\r\n with CRLF") << "binary-safe";
  EXPECT_EQ(answers_[3].reply.integer, 42);
  EXPECT_EQ(answers_[4].reply.type, Reply::Type::kNil);
  ASSERT_EQ(answers_[6].reply.elements.size(), 2u);
  EXPECT_EQ(answers_[6].reply.elements[1].str, "b");
  EXPECT_EQ(answers_[7].reply.type, Reply::Type::kError);
  EXPECT_NE(answers_[7].reply.str.find("wrong number of arguments"), std::string::npos);
  EXPECT_EQ(states, std::vector<bool>{true});
}

TEST_F(RedisClientTest, AServerGoneFailsWhatIsOutRefusesMoreAndIsConnectedAgain) {
  std::vector<bool> states;
  Client c(*reactor_, options_, [&](bool up, const std::string&) { states.push_back(up); });
  c.Start();
  ASSERT_TRUE(RunUntil([&] { return c.up(); }));
  server_.Kill();
  ASSERT_TRUE(RunUntil([&] { return !c.up(); }));
  c.Command({"PING"}, Keep());
  ASSERT_TRUE(RunUntil([&] { return answers_.size() == 1; }));
  EXPECT_FALSE(answers_[0].ok);
  EXPECT_NE(answers_[0].error.find("redis 127.0.0.1:"), std::string::npos) << answers_[0].error;
  server_.Start();
  ASSERT_TRUE(RunUntil([&] { return c.up(); })) << "connected again";
  c.Command({"PING"}, Keep());
  ASSERT_TRUE(RunUntil([&] { return answers_.size() == 2; }));
  EXPECT_TRUE(answers_[1].ok);
  EXPECT_EQ(answers_[1].reply.str, "PONG");
  EXPECT_EQ(states, (std::vector<bool>{true, false, true}));
}

TEST_F(RedisClientTest, AServerThatStopsAnsweringIsDroppedAfterTheCommandTimeout) {
  Client c(*reactor_, options_);
  c.Start();
  ASSERT_TRUE(RunUntil([&] { return c.up(); }));
  server_.Stop();
  const auto start = std::chrono::steady_clock::now();
  c.Command({"PING"}, Keep());
  ASSERT_TRUE(RunUntil([&] { return answers_.size() == 1; }));
  EXPECT_FALSE(answers_[0].ok);
  EXPECT_NE(answers_[0].error.find("no reply within 0.5s"), std::string::npos) << answers_[0].error;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_FALSE(c.up());
  server_.Continue();
  ASSERT_TRUE(RunUntil([&] { return c.up(); }));
}

// [cluster] redis_password_file: AUTH before anything; a wrong password is a connection that
// is down, and says why.
TEST_F(RedisClientTest, APasswordIsSentFirstAndAWrongOneIsDown) {
  server_.Kill();
  RedisServer guarded(port_, "s3cret");
  options_.password = "wrong";
  std::vector<std::string> downs;
  {
    Client c(*reactor_, options_, [&](bool up, const std::string& why) {
      if (!up)
        downs.push_back(why);
    });
    c.Start();
    ASSERT_TRUE(RunUntil([&] { return !downs.empty(); }));
    EXPECT_NE(downs[0].find("AUTH refused"), std::string::npos) << downs[0];
    EXPECT_FALSE(c.up());
  }
  options_.password = "s3cret";
  Client c(*reactor_, options_);
  c.Start();
  ASSERT_TRUE(RunUntil([&] { return c.up(); }));
  c.Command({"SET", "k", "v"}, Keep());
  ASSERT_TRUE(RunUntil([&] { return answers_.size() == 1; }));
  EXPECT_TRUE(answers_[0].ok);
  EXPECT_EQ(answers_[0].reply.type, Reply::Type::kStatus) << answers_[0].reply.str;
}

TEST_F(RedisClientTest, NoServerAtStartIsSaidOnceAndCommandsFailAtOnce) {
  server_.Kill();
  std::vector<std::string> downs;
  Client c(*reactor_, options_, [&](bool up, const std::string& why) {
    if (!up)
      downs.push_back(why);
  });
  c.Start();
  ASSERT_TRUE(RunUntil([&] { return !downs.empty(); }));
  c.Command({"PING"}, Keep());
  ASSERT_TRUE(RunUntil([&] { return answers_.size() == 1; }));
  EXPECT_FALSE(answers_[0].ok);
  // Retries meanwhile (every 0.1 s) are not said again.
  RunUntil([] { return false; }, 500ms);
  EXPECT_EQ(downs.size(), 1u);
}

}  // namespace
}  // namespace spate::redis
