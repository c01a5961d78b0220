// core/log: the writer thread takes lines off the callers, never makes them wait, drops and
// counts what does not fit, and writes the rest in order, all of it by StopWriter().
#include "core/log.h"

#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace spate::log {
namespace {

// stderr goes into a pipe for the test's lifetime; Read() takes what came.
class CapturedStderr {
 public:
  CapturedStderr() {
    saved_ = dup(STDERR_FILENO);
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_ = fds[0];
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
  }
  ~CapturedStderr() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    close(read_);
  }
  // Everything written so far (the pipe is read without blocking).
  std::string Read() {
    std::string out;
    fcntl(read_, F_SETFL, O_NONBLOCK);
    char buf[65536];
    for (ssize_t n; (n = read(read_, buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<size_t>(n));
    return out;
  }
  // Reads on a thread until stopped: the pipe never fills.
  void Drain(std::string* into) {
    fcntl(read_, F_SETFL, 0);
    drainer_ = std::thread([this, into] {
      char buf[65536];
      for (ssize_t n; (n = read(read_, buf, sizeof buf)) > 0;)
        into->append(buf, static_cast<size_t>(n));
    });
  }
  void StopDraining() {
    dup2(saved_, STDERR_FILENO);  // the last writer end goes: the reader sees EOF
    drainer_.join();
  }
  int pipe_fd() const { return read_; }

 private:
  int saved_ = -1;
  int read_ = -1;
  std::thread drainer_;
};

TEST(LogTest, WithoutTheWriterALineIsWrittenAtOnce) {
  CapturedStderr err;
  SPATE_LOG(kWarn, "direct %d", 7);
  const std::string out = err.Read();
  EXPECT_NE(out.find(" warn direct 7\n"), std::string::npos) << out;
}

TEST(LogTest, TheWriterWritesEveryLineInOrderByStop) {
  CapturedStderr err;
  std::string out;
  err.Drain(&out);
  StartWriter(1 << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 500; ++i)
        SPATE_LOG(kInfo, "t%d line %d", t, i);
    });
  }
  for (std::thread& th : threads)
    th.join();
  StopWriter();
  err.StopDraining();
  EXPECT_EQ(Dropped(), 0u);
  for (int t = 0; t < 4; ++t) {
    size_t pos = 0;
    for (int i = 0; i < 500; ++i) {
      const std::string want = " info t" + std::to_string(t) + " line " + std::to_string(i) + "\n";
      size_t at = out.find(want, pos);
      ASSERT_NE(at, std::string::npos) << "missing or out of order: " << want;
      pos = at + want.size();
    }
  }
}

// stderr blocked (a pipe nobody reads, already full): the writer thread waits in write(2), the
// callers do not. What does not fit in the queue is dropped and counted, and said once the
// writer can write again.
TEST(LogTest, ABlockedStderrNeverBlocksACallerLinesAreDroppedAndCounted) {
  CapturedStderr err;
  fcntl(STDERR_FILENO, F_SETFL, O_NONBLOCK);
  const std::string filler(4096, 'f');
  while (write(STDERR_FILENO, filler.data(), filler.size()) > 0) {
  }
  fcntl(STDERR_FILENO, F_SETFL, 0);  // blocking again: the writer will wait in write(2)
  const uint64_t dropped_before = Dropped();
  StartWriter(8 << 10);
  for (int i = 0; i < 20000; ++i)
    SPATE_LOG(kInfo, "flood %d", i);  // returns: would hang here if a caller waited
  EXPECT_GT(Dropped() - dropped_before, 0u);
  std::string out;
  err.Drain(&out);  // stderr moves again
  StopWriter();
  err.StopDraining();
  EXPECT_NE(out.find(" info flood 0\n"), std::string::npos);
  EXPECT_NE(out.find("lines dropped: the log could not keep up"), std::string::npos);
}

TEST(LogTest, ErrorTextIsTheErrnoDescription) {
  EXPECT_STREQ(ErrorText(ENOENT), "No such file or directory");
  EXPECT_STREQ(ErrorText(123456), "unknown error");
}

}  // namespace
}  // namespace spate::log
