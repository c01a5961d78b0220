// core/journal: the records file as a user reads it. Every line appended is in the file, whole,
// in order, exactly once, across rotation by size and by age, compression (read back with
// libzstd), external renames and a full buffer; a kill -9 leaves whole lines up to at most the
// last flush interval; a failed write leaves no torn line and is retried.
#include "core/journal.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <gtest/gtest.h>

#include "core/json.h"

#include <nlohmann/json.hpp>

namespace spate {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/journal_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/records.jsonl";
  }
  void TearDown() override { fs::remove_all(dir_); }

  Journal::Options Opts() const {
    Journal::Options o;
    o.path = path_;
    return o;
  }
  std::unique_ptr<Journal> OpenOrDie(const Journal::Options& o) {
    std::string error;
    auto j = Journal::Open(o, &error);
    EXPECT_TRUE(j.has_value()) << error;
    return j.has_value() ? std::move(*j) : nullptr;
  }

  std::string dir_, path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The file's lines; false when it holds anything after its last newline (a torn line).
bool SplitLines(const std::string& text, std::vector<std::string>* lines) {
  size_t pos = 0;
  for (size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1)
    lines->push_back(text.substr(pos, nl - pos));
  return pos == text.size();
}

std::string Decompress(const std::string& frame) {
  ZSTD_DCtx* d = ZSTD_createDCtx();
  std::string out;
  std::vector<char> buf(ZSTD_DStreamOutSize());
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  size_t left = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
    left = ZSTD_decompressStream(d, &ob, &in);
    EXPECT_FALSE(ZSTD_isError(left)) << ZSTD_getErrorName(left);
    if (ZSTD_isError(left))
      break;
    out.append(buf.data(), ob.pos);
  }
  EXPECT_EQ(left, 0u) << "a truncated frame";
  ZSTD_freeDCtx(d);
  return out;
}

// The rotated files of `live` in time order (the test's own reading of the documented names:
// LIVE.YYYYMMDDTHHMMSS[.N][.zst]), as full paths.
std::vector<std::string> Rotated(const std::string& dir, const std::string& live) {
  const std::string prefix = fs::path(live).filename().string() + ".";
  std::vector<std::tuple<std::string, int, std::string>> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0)
      continue;
    std::string rest = name.substr(prefix.size());
    if (rest.size() > 4 && rest.substr(rest.size() - 4) == ".zst")
      rest.resize(rest.size() - 4);
    EXPECT_GE(rest.size(), 15u) << name;
    EXPECT_EQ(rest[8], 'T') << name;
    const int n = rest.size() > 15 ? std::stoi(rest.substr(16)) : 0;
    found.emplace_back(rest.substr(0, 15), n, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& f : found)
    paths.push_back(std::get<2>(f));
  return paths;
}

std::string Contents(const std::string& path) {
  const std::string raw = ReadFile(path);
  return path.size() > 4 && path.substr(path.size() - 4) == ".zst" ? Decompress(raw) : raw;
}

// Polls until `pred` holds; false after a generous deadline (a loaded machine is slow, and the
// test asserts what happens, not how fast).
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds deadline = std::chrono::seconds(30)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end)
      return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

std::string Record(int thread, int i) {
  std::string line = "{\"t\":";
  AppendJsonNumber(line, int64_t{thread});
  line += ",\"i\":";
  AppendJsonNumber(line, int64_t{i});
  line += ",\"reply\":";
  AppendJsonString(line, "550 5.1.1 <user@example.test>: no such user\r\n\xFF");
  line += "}";
  return line;
}

TEST_F(JournalTest, AnEmptyPathIsAnError) {
  std::string error;
  auto j = Journal::Open(Journal::Options{}, &error);
  EXPECT_FALSE(j.has_value());
  EXPECT_EQ(error, "records path is empty");
}

TEST_F(JournalTest, AMissingDirectoryIsCreated) {
  Journal::Options o = Opts();
  o.path = dir_ + "/var/log/spate/records.jsonl";
  {
    auto j = OpenOrDie(o);
    ASSERT_NE(j, nullptr);
    j->Append("{\"a\":1}");
  }
  EXPECT_EQ(ReadFile(o.path), "{\"a\":1}\n");
  struct stat st;
  ASSERT_EQ(stat(o.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

// Tests run as root here, so a mode bit would not stop the open: a directory that is a file does.
TEST_F(JournalTest, AnUnwritablePathGivesAClearError) {
  std::ofstream(dir_ + "/plain") << "x";
  Journal::Options o = Opts();
  o.path = dir_ + "/plain/records.jsonl";
  std::string error;
  auto j = Journal::Open(o, &error);
  ASSERT_FALSE(j.has_value());
  EXPECT_NE(error.find(dir_ + "/plain"), std::string::npos) << error;
  EXPECT_NE(error.find("Not a directory"), std::string::npos) << error;

  o.path = dir_;  // a directory where the file should be
  error.clear();
  EXPECT_FALSE(Journal::Open(o, &error).has_value());
  EXPECT_NE(error.find("cannot open " + dir_), std::string::npos) << error;
}

TEST_F(JournalTest, ConcurrentAppendsAreAllWrittenWholeAndInOrderPerThread) {
  constexpr int kThreads = 8, kLines = 20000;
  auto j = OpenOrDie(Opts());
  ASSERT_NE(j, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kLines; ++i)
        j->Append(Record(t, i));
    });
  }
  for (auto& th : threads)
    th.join();
  j->Flush();  // everything is in the file now, not only at the close
  std::vector<std::string> lines;
  ASSERT_TRUE(SplitLines(ReadFile(path_), &lines));
  ASSERT_EQ(lines.size(), size_t{kThreads} * kLines);
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    nlohmann::json r = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(r.is_discarded()) << line;
    const int t = r["t"].get<int>();
    ASSERT_EQ(r["i"].get<int>(), next[t]++) << "thread " << t << " out of order";
    ASSERT_EQ(line, Record(t, r["i"].get<int>()));
  }
  const Journal::Stats s = j->stats();
  EXPECT_EQ(s.lines, size_t{kThreads} * kLines);
  EXPECT_EQ(s.bytes, ReadFile(path_).size());
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.write_errors, 0u);
  j->Append("last");
  j.reset();  // the close writes what is still pending
  lines.clear();
  ASSERT_TRUE(SplitLines(ReadFile(path_), &lines));
  EXPECT_EQ(lines.back(), "last");
}

TEST_F(JournalTest, LinesAppearWithinTheFlushIntervalWithoutFlush) {
  Journal::Options o = Opts();
  o.flush_interval = milliseconds(100);
  auto j = OpenOrDie(o);
  ASSERT_NE(j, nullptr);
  for (int i = 0; i < 10; ++i)
    j->Append(Record(0, i));
  std::string want;
  for (int i = 0; i < 10; ++i)
    want += Record(0, i) + "\n";
  EXPECT_TRUE(WaitFor([&] { return ReadFile(path_) == want; })) << ReadFile(path_);
  // The journal is still open: the writer wrote them on its own.
}

TEST_F(JournalTest, RotationBySizeKeepsEachFileUnderTheLimitAndEveryLineOnce) {
  Journal::Options o = Opts();
  o.max_size = 4096;
  o.keep = 1000;
  std::vector<std::string> want;
  {
    auto j = OpenOrDie(o);
    ASSERT_NE(j, nullptr);
    for (int i = 0; i < 3000; ++i) {
      std::string line = Record(0, i) + std::string(i % 97, 'p');
      if (i == 1500)
        line = std::string(10000, 'L');  // larger than max_size: a file of its own
      want.push_back(line);
      j->Append(std::string(line));
      if (i % 500 == 0)
        j->Flush();
    }
    j->Flush();
    EXPECT_GT(j->stats().rotations, 50u);
  }
  std::vector<std::string> files = Rotated(dir_, path_);
  files.push_back(path_);
  std::vector<std::string> got;
  for (const std::string& f : files) {
    const std::string text = Contents(f);
    std::vector<std::string> lines;
    EXPECT_TRUE(SplitLines(text, &lines)) << f;
    if (lines.size() == 1 && lines[0].size() > o.max_size)
      EXPECT_EQ(lines[0], std::string(10000, 'L'));
    else
      EXPECT_LE(text.size(), o.max_size) << f;
    got.insert(got.end(), lines.begin(), lines.end());
  }
  EXPECT_EQ(got, want);  // in order, none lost, none twice
}

TEST_F(JournalTest, KeepRemovesTheOldestRotatedFiles) {
  Journal::Options o = Opts();
  o.max_size = 2048;
  o.keep = 3;
  std::vector<std::string> want;
  {
    auto j = OpenOrDie(o);
    ASSERT_NE(j, nullptr);
    for (int i = 0; i < 2000; ++i) {
      want.push_back(Record(0, i));
      j->Append(Record(0, i));
    }
  }
  std::vector<std::string> files = Rotated(dir_, path_);
  ASSERT_EQ(files.size(), 3u);
  files.push_back(path_);
  std::vector<std::string> got;
  for (const std::string& f : files)
    EXPECT_TRUE(SplitLines(Contents(f), &got)) << f;
  // What is left is the newest: the last lines, contiguous up to the end.
  ASSERT_FALSE(got.empty());
  ASSERT_LT(got.size(), want.size());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.end() - static_cast<long>(got.size())));
}

TEST_F(JournalTest, CompressedRotatedFilesDecompressToExactlyTheLines) {
  Journal::Options o = Opts();
  o.max_size = 64 << 10;
  o.keep = 100;
  o.compress = true;
  std::vector<std::string> want;
  {
    auto j = OpenOrDie(o);
    ASSERT_NE(j, nullptr);
    for (int i = 0; i < 5000; ++i) {
      want.push_back(Record(i % 3, i));
      j->Append(Record(i % 3, i));
    }
  }
  std::vector<std::string> files = Rotated(dir_, path_);
  ASSERT_GE(files.size(), 3u);
  for (const std::string& f : files)
    EXPECT_EQ(f.substr(f.size() - 4), ".zst") << "left uncompressed: " << f;
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  files.push_back(path_);
  std::vector<std::string> got;
  for (const std::string& f : files)
    EXPECT_TRUE(SplitLines(Contents(f), &got)) << f;
  EXPECT_EQ(got, want);
}

TEST_F(JournalTest, TheLiveFileIsRotatedWhenOlderThanMaxAge) {
  Journal::Options o = Opts();
  o.max_age = Seconds(1);
  o.flush_interval = milliseconds(50);
  auto j = OpenOrDie(o);
  ASSERT_NE(j, nullptr);
  j->Append("first");
  j->Flush();
  ASSERT_TRUE(WaitFor([&] { return Rotated(dir_, path_).size() == 1; }));
  j->Append("second");
  j.reset();
  EXPECT_EQ(Contents(Rotated(dir_, path_).at(0)), "first\n");
  EXPECT_EQ(ReadFile(path_), "second\n");
}

TEST_F(JournalTest, AnOldFileFoundAtOpenIsRotatedFirst) {
  std::ofstream(path_) << "from before\n";
  std::this_thread::sleep_for(milliseconds(1100));  // makes the file older than max_age
  Journal::Options o = Opts();
  o.max_age = Seconds(1);
  {
    auto j = OpenOrDie(o);
    ASSERT_NE(j, nullptr);
    j->Append("new");
    EXPECT_EQ(j->stats().rotations, 1u);
  }
  ASSERT_EQ(Rotated(dir_, path_).size(), 1u);
  EXPECT_EQ(Contents(Rotated(dir_, path_)[0]), "from before\n");
  EXPECT_EQ(ReadFile(path_), "new\n");
}

// The "disk" is a FIFO nobody reads, so the writer waits in write(2): Append() must not, and
// what passes max_buffered is dropped whole and counted.
TEST_F(JournalTest, AFullBufferDropsAndCountsLinesAndAppendNeverWaits) {
  ASSERT_EQ(mkfifo(path_.c_str(), 0600), 0);
  const int reader = open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  Journal::Options o = Opts();
  o.max_buffered = 256 << 10;
  o.flush_interval = milliseconds(10);
  auto j = OpenOrDie(o);
  ASSERT_NE(j, nullptr);
  constexpr int kLines = 100000;  // ~10 MB: far more than the pipe and the buffer
  for (int i = 0; i < kLines; ++i)
    j->Append(Record(0, i));  // would hang here if Append waited for the writer
  EXPECT_GT(j->stats().dropped, 0u);
  std::string got;
  std::thread drain([&] {
    fcntl(reader, F_SETFL, 0);
    char buf[65536];
    for (ssize_t n; (n = read(reader, buf, sizeof buf)) > 0;)
      got.append(buf, static_cast<size_t>(n));
  });
  const uint64_t dropped = j->stats().dropped;
  j.reset();  // writes the rest and closes the writing end: the reader sees EOF
  drain.join();
  close(reader);
  std::vector<std::string> lines;
  ASSERT_TRUE(SplitLines(got, &lines));
  EXPECT_EQ(lines.size() + dropped, size_t{kLines});
  int last = -1;
  for (const std::string& line : lines) {
    nlohmann::json r = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(r.is_discarded()) << "torn: " << line;
    const int i = r["i"].get<int>();
    ASSERT_GT(i, last);
    ASSERT_EQ(line, Record(0, i));
    last = i;
  }
}

TEST_F(JournalTest, AfterAnExternalRenameANewFileIsWrittenAtThePath) {
  auto j = OpenOrDie(Opts());
  ASSERT_NE(j, nullptr);
  j->Append("one");
  j->Flush();
  ASSERT_EQ(rename(path_.c_str(), (path_ + ".moved").c_str()), 0);  // logrotate, create mode
  j->Append("two");
  j->Flush();  // the writer sees the path no longer names its file
  EXPECT_EQ(ReadFile(path_), "two\n");
  ASSERT_EQ(rename(path_.c_str(), (path_ + ".moved2").c_str()), 0);
  j->Reopen();  // SIGHUP-style, forced
  j->Append("three");
  j->Flush();
  EXPECT_EQ(ReadFile(path_), "three\n");
  j.reset();
  EXPECT_EQ(ReadFile(path_ + ".moved"), "one\n");
  EXPECT_EQ(ReadFile(path_ + ".moved2"), "two\n");
  EXPECT_EQ(ReadFile(path_), "three\n");
}

// A file size limit (RLIMIT_FSIZE, in a child of its own) makes write(2) stop part-way through
// a line, then fail with EFBIG: the file must still end with a whole line, the failure be
// counted, and every line arrive once the limit is lifted. Exit codes name the failed check.
TEST_F(JournalTest, APartlyFailedWriteLeavesNoTornLineAndIsRetried) {
  constexpr int kLines = 100;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit lim{1000, RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
      _exit(10);
    Journal::Options o = Opts();
    o.flush_interval = milliseconds(20);
    auto j = Journal::Open(o, nullptr);
    if (!j)
      _exit(11);
    for (int i = 0; i < kLines; ++i)
      (*j)->Append(Record(0, i));
    (*j)->Flush();
    const std::string text = ReadFile(path_);
    std::vector<std::string> lines;
    if (!SplitLines(text, &lines))
      _exit(12);  // torn
    if (text.size() > 1000 || lines.empty() || lines.size() >= size_t{kLines})
      _exit(13);
    if ((*j)->stats().write_errors == 0)
      _exit(14);
    lim.rlim_cur = RLIM_INFINITY;
    setrlimit(RLIMIT_FSIZE, &lim);
    (*j)->Flush();
    if ((*j)->stats().lines != size_t{kLines})
      _exit(15);
    j->reset();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  std::vector<std::string> lines;
  ASSERT_TRUE(SplitLines(ReadFile(path_), &lines));
  ASSERT_EQ(lines.size(), size_t{kLines});
  for (int i = 0; i < kLines; ++i)
    EXPECT_EQ(lines[i], Record(0, i));
}

// kill -9 of a process that appends steadily: the file holds lines 0..k, whole and consecutive,
// and nothing appended more than the flush interval (plus a margin for a loaded machine) before
// the kill is missing. The child notes in shared memory, every ~100 ms, how far it had got.
TEST_F(JournalTest, KillNineLosesAtMostTheLastIntervalAndNoLineIsTorn) {
  struct Mark {
    int64_t steady_ns;
    int64_t last;  // the last line appended (returned from Append) at that time
  };
  constexpr int kMaxMarks = 1000;
  struct Shared {
    std::atomic<int> marks;
    Mark mark[kMaxMarks];
  };
  void* mem =
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* shared = new (mem) Shared{};
  const auto now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  const milliseconds interval(500);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Journal::Options o = Opts();
    o.flush_interval = interval;
    auto j = Journal::Open(o, nullptr);
    if (!j)
      _exit(1);
    int64_t last_mark = now_ns();
    for (int64_t i = 0;; ++i) {
      (*j)->Append("{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i % 50, 'x') +
                   "\"}");
      if (i % 16 == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      if (const int64_t t = now_ns(); t - last_mark > 100'000'000) {
        const int m = shared->marks.load(std::memory_order_relaxed);
        if (m < kMaxMarks) {
          shared->mark[m] = Mark{t, i};
          shared->marks.store(m + 1, std::memory_order_release);
        }
        last_mark = t;
      }
    }
  }
  std::this_thread::sleep_for(milliseconds(2500));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  const int64_t killed_ns = now_ns();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child failed: " << status;

  std::vector<std::string> lines;
  ASSERT_TRUE(SplitLines(ReadFile(path_), &lines)) << "a torn last line";
  ASSERT_FALSE(lines.empty());
  for (size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i],
              "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i % 50, 'x') + "\"}");
  }
  const int64_t k = static_cast<int64_t>(lines.size()) - 1;
  const int64_t margin_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(interval + milliseconds(1000)).count();
  const int marks = shared->marks.load(std::memory_order_acquire);
  int checked = 0;
  for (int m = 0; m < marks; ++m) {
    if (shared->mark[m].steady_ns < killed_ns - margin_ns) {
      EXPECT_LE(shared->mark[m].last, k)
          << "appended " << (killed_ns - shared->mark[m].steady_ns) / 1000000
          << " ms before the kill, missing";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << "the child made no marks early enough to check";
  munmap(mem, sizeof(Shared));
}

}  // namespace
}  // namespace spate
