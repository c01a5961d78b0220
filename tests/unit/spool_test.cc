// tests/unit/spool_test.cc
//
// Spool against a real RocksDB in a fresh temporary directory per test. What an operator relies
// on: every acknowledged message comes back after a restart exactly as it was accepted (envelope,
// flags, body bytes), finished recipients stay finished, deferred ones keep their retry state,
// a fully finished message is gone for good, and ids keep growing across restarts.
// Spool callbacks run on the spool's own threads: results are handed back through futures or a
// mutex and condition variable, and every wait has a generous deadline.
#include "queue/spool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/listener.h>

#include "queue/body_log.h"
#include "queue/errc.h"

namespace spate::queue {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;

// A directory under /tmp, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/spool_test.XXXXXX";
    char* p = mkdtemp(tmpl);
    if (p != nullptr) {
      path_ = p;
    }
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Accepted {
  Result<MessageId> id = Unexpected{make_error_code(Errc::kShutdown)};
  NewMessage message;
};

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  // Opens the spool at the test's directory; recovers (collecting what comes back) and starts.
  std::unique_ptr<Spool> OpenAndRecover(std::vector<RecoveredMessage>* recovered) {
    std::string error;
    Spool::Options o = options_;
    o.path = dir_.path() + "/spool";
    auto spool = Spool::Open(o, &error);
    EXPECT_TRUE(spool.has_value()) << error;
    if (!spool) {
      return nullptr;
    }
    Result<void> r = (*spool)->Recover([&](RecoveredMessage&& m) {
      if (recovered != nullptr) {
        recovered->push_back(std::move(m));
      }
    });
    EXPECT_TRUE(r.has_value()) << r.error().message();
    (*spool)->Start();
    return std::move(spool).value();
  }

  std::unique_ptr<Spool> Open() { return OpenAndRecover(nullptr); }

  // Accepts one message and waits for its durable id.
  static MessageId AcceptSync(Spool& spool, NewMessage message) {
    std::promise<Accepted> done;
    auto future = done.get_future();
    spool.Accept(std::move(message), [&done](Result<MessageId> id, NewMessage&& back) {
      done.set_value(Accepted{std::move(id), std::move(back)});
    });
    if (future.wait_for(kDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "Accept did not complete";
      return 0;
    }
    Accepted a = future.get();
    EXPECT_TRUE(a.id.has_value()) << a.id.error().message();
    return a.id.has_value() ? *a.id : 0;
  }

  static Result<std::string> ReadBodySync(Spool& spool, MessageId id) {
    std::promise<Result<std::string>> done;
    auto future = done.get_future();
    spool.ReadBody(id, [&done](Result<std::string> body) { done.set_value(std::move(body)); });
    if (future.wait_for(kDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "ReadBody did not complete";
      return Unexpected{make_error_code(Errc::kShutdown)};
    }
    return future.get();
  }

  // Finish and Defer have no completion: wait until the stats show the commit thread did them.
  static void WaitForStats(const Spool& spool, uint64_t finished, uint64_t deferred) {
    auto deadline = std::chrono::steady_clock::now() + kDeadline;
    SpoolStats s = spool.stats();
    while ((s.finished < finished || s.deferred < deferred) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
      s = spool.stats();
    }
    ASSERT_GE(s.finished, finished);
    ASSERT_GE(s.deferred, deferred);
  }

  TempDir dir_;
  Spool::Options options_;  // what OpenAndRecover() opens with, but the path
};

NewMessage Msg(std::string mail_from, std::vector<std::string> rcpt_to, std::string body,
               bool body_8bit = false) {
  NewMessage m;
  m.mail_from = std::move(mail_from);
  m.rcpt_to = std::move(rcpt_to);
  m.body = std::move(body);
  m.body_8bit = body_8bit;
  return m;
}

// Bytes a body must survive unchanged: NUL, bare CR and LF, CRLF, 8-bit, and a dot line.
std::string BinaryBody(int n) {
  std::string body = "Subject: test " + std::to_string(n) + "\r\n\r\n";
  body += std::string("a\0b\r\n", 5);
  body += "\r\r\n\n.\r\n\xff\xfe\x80 end\r\n";
  body += std::string(static_cast<size_t>(n % 7) * 100, static_cast<char>(n));
  body.push_back('\0');
  return body;
}

TEST_F(SpoolTest, ConcurrentAcceptsGetDistinctIncreasingIdsAndTheirMessageBack) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  constexpr int kTotal = kThreads * kPerThread;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Accepted> results;  // in callback order
  std::set<std::thread::id> callback_threads;

  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        NewMessage m;
        m.mail_from = "t" + std::to_string(t) + "-" + std::to_string(i) + "@example.org";
        m.rcpt_to = {"a@example.com", "b" + std::to_string(i) + "@example.net"};
        m.body = BinaryBody(t * 1000 + i);
        m.body_8bit = (i % 2) == 1;
        spool->Accept(std::move(m), [&](Result<MessageId> id, NewMessage&& back) {
          std::lock_guard lock(mu);
          results.push_back(Accepted{std::move(id), std::move(back)});
          callback_threads.insert(std::this_thread::get_id());
          cv.notify_all();
        });
      }
    });
  }
  for (auto& p : producers) {
    p.join();
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kDeadline, [&] { return results.size() == kTotal; }))
        << results.size() << " of " << kTotal << " accepted";
  }

  std::set<MessageId> ids;
  std::map<int, MessageId> last_id_of_thread;
  MessageId previous = 0;
  for (const Accepted& a : results) {
    ASSERT_TRUE(a.id.has_value()) << a.id.error().message();
    MessageId id = *a.id;
    // One commit thread hands out ids in queue order: callbacks see them strictly increasing.
    EXPECT_GT(id, previous);
    previous = id;
    ids.insert(id);
    // The message came back intact.
    const NewMessage& m = a.message;
    int t = 0;
    int i = 0;
    ASSERT_EQ(std::sscanf(m.mail_from.c_str(), "t%d-%d@", &t, &i), 2) << m.mail_from;
    EXPECT_EQ(m.body, BinaryBody(t * 1000 + i));
    EXPECT_EQ(m.body_8bit, (i % 2) == 1);
    ASSERT_EQ(m.rcpt_to.size(), 2u);
    EXPECT_EQ(m.rcpt_to[0], "a@example.com");
    EXPECT_EQ(m.rcpt_to[1], "b" + std::to_string(i) + "@example.net");
    // Each producer's messages are stored in the order it submitted them.
    EXPECT_GT(id, last_id_of_thread[t]) << "producer " << t << " message " << i;
    last_id_of_thread[t] = id;
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kTotal));
  EXPECT_EQ(callback_threads.size(), 1u);  // all on the commit thread

  SpoolStats s = spool->stats();
  EXPECT_EQ(s.accepted, static_cast<uint64_t>(kTotal));
  EXPECT_GE(s.batches, 1u);
  EXPECT_LE(s.batches, static_cast<uint64_t>(kTotal));
  EXPECT_EQ(s.pending_messages, static_cast<uint64_t>(kTotal));
  EXPECT_GT(s.commit_seconds, 0.0) << "time in synced writes is counted";
}

TEST_F(SpoolTest, ReopenRecoversEveryMessageIntact) {
  struct Sent {
    NewMessage message;
    MessageId id = 0;
  };
  std::vector<Sent> sent(3);
  sent[0].message = Msg("alice@example.org", {"bob@example.com"}, BinaryBody(1), false);
  sent[1].message = Msg("", {"x@a.example", "y@b.example", "z@c.example"}, BinaryBody(2), true);
  sent[2].message = Msg("carol@example.org", {"dave@example.com", "eve@example.com"},
                        std::string("\0\0\0", 3), true);
  // The DSN and submission details travel with the envelope (RFC 3461, RFC 6531, RFC 4954).
  sent[1].message.smtputf8 = true;
  sent[1].message.ret = 2;
  sent[1].message.envid = std::string("env\0id+2B", 9);
  sent[1].message.auth_user = "submitter";
  sent[1].message.dsn = {{6, "rfc822;x@a.example"}, {}, {8, "utf-8;z@c.example"}};
  // The campaign and the priority (RFC 6710) too: envelope versions 2 and 3 (the other tests'
  // messages are version 1).
  sent[1].message.priority = -4;
  sent[2].message.campaign = "spring-sale";
  sent[2].message.priority = 9;
  sent[0].message.campaign = "autumn";
  int64_t before_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    for (Sent& s : sent) {
      s.id = AcceptSync(*spool, s.message);
    }
  }
  int64_t after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();

  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    SCOPED_TRACE("message " + std::to_string(i));
    const RecoveredMessage& r = recovered[i];  // in id order, which is acceptance order
    const NewMessage& m = sent[i].message;
    EXPECT_EQ(r.id, sent[i].id);
    EXPECT_EQ(r.mail_from, m.mail_from);
    EXPECT_EQ(r.body_size, m.body.size());
    EXPECT_EQ(r.body_8bit, m.body_8bit);
    EXPECT_EQ(r.smtputf8, m.smtputf8);
    EXPECT_EQ(r.ret, m.ret);
    EXPECT_EQ(r.envid, m.envid);
    EXPECT_EQ(r.auth_user, m.auth_user);
    EXPECT_EQ(r.campaign, m.campaign);
    EXPECT_EQ(r.priority, m.priority);
    EXPECT_GE(r.received_ms, before_ms);
    EXPECT_LE(r.received_ms, after_ms);
    ASSERT_EQ(r.recipients.size(), m.rcpt_to.size());
    for (size_t j = 0; j < m.rcpt_to.size(); ++j) {
      EXPECT_EQ(r.recipients[j].index, j);
      EXPECT_EQ(r.recipients[j].address, m.rcpt_to[j]);
      DsnRequest want = j < m.dsn.size() ? m.dsn[j] : DsnRequest{};
      EXPECT_EQ(r.recipients[j].dsn.notify, want.notify);
      EXPECT_EQ(r.recipients[j].dsn.orcpt, want.orcpt);
      EXPECT_EQ(r.recipients[j].attempts, 0);
      EXPECT_EQ(r.recipients[j].next_attempt_ms, 0);
    }
    Result<std::string> body = ReadBodySync(*spool, r.id);
    ASSERT_TRUE(body.has_value()) << body.error().message();
    EXPECT_EQ(*body, m.body);
  }
  EXPECT_EQ(spool->stats().pending_messages, sent.size());
}

// More bodies than one memtable holds (32 MB): some are read back from a memtable, some from a
// table file its flush wrote, and after a reopen every one still there comes back, in order,
// and the finished ones do not.
TEST_F(SpoolTest, BodiesPastAMemtableAreReadBackFromItsFlushAndAfterReopen) {
  options_.body_log_min_bytes = UINT64_MAX;  // every body in RocksDB
  options_.sync = false;
  constexpr int kMessages = 48;
  auto body_of = [](int i) {
    std::string body = "Subject: " + std::to_string(i) + "\r\n\r\n";
    body.resize(1 << 20, static_cast<char>('a' + i % 26));
    return body;
  };
  std::vector<MessageId> ids;
  std::set<MessageId> finished;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < kMessages; ++i)
      ids.push_back(AcceptSync(*spool, Msg("a@example.org", {"b@example.com"}, body_of(i), false)));
    for (int i = 0; i < kMessages; i += 3) {
      spool->Finish(ids[static_cast<size_t>(i)], 0);
      finished.insert(ids[static_cast<size_t>(i)]);
    }
    WaitForStats(*spool, finished.size(), 0);
    for (int i = 0; i < kMessages; ++i) {
      SCOPED_TRACE("message " + std::to_string(i));
      Result<std::string> body = ReadBodySync(*spool, ids[static_cast<size_t>(i)]);
      if (finished.count(ids[static_cast<size_t>(i)]) != 0) {
        EXPECT_FALSE(body.has_value());
      } else {
        ASSERT_TRUE(body.has_value()) << body.error().message();
        EXPECT_TRUE(*body == body_of(i));
      }
    }
  }
  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  size_t tables = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path() + "/spool"))
    tables += entry.path().extension() == ".sst" ? 1 : 0;
  EXPECT_GT(tables, 0u) << "no memtable was flushed";
  ASSERT_EQ(recovered.size(), kMessages - finished.size());
  size_t next = 0;
  for (int i = 0; i < kMessages; ++i) {
    if (finished.count(ids[static_cast<size_t>(i)]) != 0)
      continue;
    SCOPED_TRACE("message " + std::to_string(i));
    EXPECT_EQ(recovered[next++].id, ids[static_cast<size_t>(i)]);
    Result<std::string> body = ReadBodySync(*spool, ids[static_cast<size_t>(i)]);
    ASSERT_TRUE(body.has_value()) << body.error().message();
    EXPECT_TRUE(*body == body_of(i));
  }
}

TEST_F(SpoolTest, FinishAndDeferSurviveReopen) {
  MessageId partial = 0;
  MessageId done = 0;
  MessageId untouched = 0;
  constexpr int64_t kRetryAt = 1'700'000'123'456;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    partial = AcceptSync(
        *spool, Msg("a@example.org",
                    {"r0@example.com", "r1@example.com", "r2@example.com", "r3@example.com"},
                    "partial\r\n", false));
    done = AcceptSync(
        *spool, Msg("b@example.org", {"s0@example.com", "s1@example.com"}, "done\r\n", false));
    untouched = AcceptSync(*spool, Msg("c@example.org", {"t0@example.com"}, "untouched\r\n", true));
    EXPECT_EQ(spool->stats().pending_messages, 3u);

    spool->Finish(partial, 0);
    spool->Defer(partial, 1, 3, kRetryAt, /*delay_warned=*/true);  // its sender was told
    spool->Defer(partial, 3, 1, kRetryAt + 1);
    spool->Defer(partial, 3, 2, kRetryAt + 2);  // the latest state wins
    spool->Finish(done, 1);
    spool->Finish(done, 0);
    WaitForStats(*spool, 3, 3);
    SpoolStats s = spool->stats();
    EXPECT_EQ(s.finished, 3u);
    EXPECT_EQ(s.deferred, 3u);
    EXPECT_EQ(s.pending_messages, 2u);  // `done` went with its last recipient

    Result<std::string> gone = ReadBodySync(*spool, done);
    ASSERT_FALSE(gone.has_value());
    EXPECT_EQ(gone.error(), make_error_code(Errc::kNotFound));
  }

  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(spool->stats().pending_messages, 2u);

  const RecoveredMessage& p = recovered[0];
  EXPECT_EQ(p.id, partial);
  ASSERT_EQ(p.recipients.size(), 3u);
  EXPECT_EQ(p.recipients[0].index, 1u);
  EXPECT_EQ(p.recipients[0].address, "r1@example.com");
  EXPECT_EQ(p.recipients[0].attempts, 3);
  EXPECT_EQ(p.recipients[0].next_attempt_ms, kRetryAt);
  EXPECT_TRUE(p.recipients[0].delay_warned) << "no second delay notice after a restart";
  EXPECT_FALSE(p.recipients[2].delay_warned);
  EXPECT_EQ(p.recipients[1].index, 2u);
  EXPECT_EQ(p.recipients[1].address, "r2@example.com");
  EXPECT_EQ(p.recipients[1].attempts, 0);
  EXPECT_EQ(p.recipients[1].next_attempt_ms, 0);
  EXPECT_EQ(p.recipients[2].index, 3u);
  EXPECT_EQ(p.recipients[2].address, "r3@example.com");
  EXPECT_EQ(p.recipients[2].attempts, 2);
  EXPECT_EQ(p.recipients[2].next_attempt_ms, kRetryAt + 2);

  const RecoveredMessage& u = recovered[1];
  EXPECT_EQ(u.id, untouched);
  EXPECT_TRUE(u.body_8bit);
  ASSERT_EQ(u.recipients.size(), 1u);
  EXPECT_EQ(u.recipients[0].address, "t0@example.com");

  Result<std::string> gone = ReadBodySync(*spool, done);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error(), make_error_code(Errc::kNotFound));
  Result<std::string> body = ReadBodySync(*spool, partial);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, "partial\r\n");

  // Finishing the rest after the restart removes the message too.
  spool->Finish(partial, 1);
  spool->Finish(partial, 2);
  spool->Finish(partial, 3);
  WaitForStats(*spool, 3, 0);
  EXPECT_EQ(spool->stats().pending_messages, 1u);
  spool.reset();
  recovered.clear();
  spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].id, untouched);
}

// One batch that removes delivered messages and takes new ones (the usual batch under load: the
// spool writes the removals and the new messages in key order, not in the order they came):
// after a restart exactly the new and the undelivered messages are there, each with its own
// body, small ones in RocksDB and large ones in the body log alike.
TEST_F(SpoolTest, ABatchThatRemovesOldMessagesAndTakesNewOnesKeepsExactlyTheRightOnes) {
  options_.body_log_min_bytes = 1000;
  auto body = [](int n) {
    std::string b = "Subject: " + std::to_string(n) + "\r\n\r\n";
    b.append(n % 3 == 0 ? 1500 : 100, static_cast<char>('a' + n % 26));  // every third logged
    return b + "\r\n";
  };
  constexpr int kOld = 40;
  constexpr int kNew = 40;
  std::map<MessageId, std::string> kept;  // id -> body, what must come back
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    std::vector<MessageId> old;
    for (int i = 0; i < kOld; ++i) {
      old.push_back(AcceptSync(*spool, Msg("a@example.org", {"r@example.com"}, body(i))));
    }
    // Everything below is queued while the commit thread is held in a state write's callback,
    // so it is written as one batch: the even old messages finished, the new ones in between.
    std::promise<void> held;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    spool->PutState("test/hold", "1", [&held, released] {
      held.set_value();
      released.wait();
    });
    ASSERT_EQ(held.get_future().wait_for(kDeadline), std::future_status::ready);
    std::mutex mu;
    std::condition_variable cv;
    std::map<int, MessageId> fresh;
    for (int i = 0; i < kNew; ++i) {
      if (i < kOld && i % 2 == 0) {
        spool->Finish(old[static_cast<size_t>(i)], 0);
      }
      spool->Accept(Msg("b@example.org", {"s@example.com"}, body(100 + i)),
                    [&, i](Result<MessageId> id, NewMessage&&) {
                      std::lock_guard lock(mu);
                      fresh[i] = id.has_value() ? *id : 0;
                      cv.notify_all();
                    });
    }
    const uint64_t batches_before = spool->stats().batches;
    release.set_value();
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, kDeadline, [&] { return fresh.size() == kNew; }));
    }
    // The held batch was counted before its callback ran: one more is this one.
    EXPECT_EQ(spool->stats().batches, batches_before + 1) << "the test means one batch with both";
    for (int i = 0; i < kOld; ++i) {
      if (i % 2 == 1) {
        kept[old[static_cast<size_t>(i)]] = body(i);
      }
    }
    for (const auto& [i, id] : fresh) {
      ASSERT_NE(id, 0u) << "new message " << i << " refused";
      kept[id] = body(100 + i);
    }
    for (int i = 0; i < kOld; i += 2) {
      Result<std::string> gone = ReadBodySync(*spool, old[static_cast<size_t>(i)]);
      ASSERT_FALSE(gone.has_value()) << "finished message " << i << " still has a body";
    }
  }

  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  std::map<MessageId, std::string> back;
  for (const RecoveredMessage& m : recovered) {
    Result<std::string> b = ReadBodySync(*spool, m.id);
    ASSERT_TRUE(b.has_value()) << b.error().message();
    EXPECT_EQ(m.body_size, b->size());
    back[m.id] = *b;
  }
  EXPECT_EQ(back, kept);
}

TEST_F(SpoolTest, StateIsWrittenThenReadBackByPrefixAfterReopen) {
  {
    auto spool = Open();
    std::promise<void> written;
    spool->PutState("control/a", "1");
    spool->PutState("control/b", "2");
    spool->PutState("other/c", "3");
    spool->PutState("control/a", "one");         // the last put wins
    spool->PutState("control/b", std::nullopt);  // deleted
    spool->PutState("control/d", "4", [&written] { written.set_value(); });
    written.get_future().wait();  // its batch is on disk: so is every earlier write
    auto now = spool->ReadState("control/");
    ASSERT_TRUE(now.has_value());
    EXPECT_EQ(*now, (std::vector<std::pair<std::string, std::string>>{{"control/a", "one"},
                                                                      {"control/d", "4"}}));
  }
  auto spool = Open();
  auto back = spool->ReadState("control/");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, (std::vector<std::pair<std::string, std::string>>{{"control/a", "one"},
                                                                     {"control/d", "4"}}));
  auto other = spool->ReadState("other/");
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->size(), 1u);
  EXPECT_TRUE(spool->ReadState("none/")->empty());
}

TEST_F(SpoolTest, TrashLeftByACrashIsDeletedAtOpen) {
  // Obsolete write-ahead logs are renamed *.trash and truncated in the background (spool.cc,
  // kDeleteBytesPerSecond); a crash in between leaves them behind, and the next Open (RocksDB's,
  // with or without the background deletion) removes them: a spool does not keep growing over
  // crashes.
  Open().reset();
  const std::string spool_dir = dir_.path() + "/spool";
  for (const char* name : {"/000901.log.trash", "/000902.log.trash"}) {
    std::ofstream(spool_dir + name) << std::string(1 << 20, 'w');
  }
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  auto trash_left = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(spool_dir))
      n += e.path().string().ends_with(".trash") ? 1 : 0;
    return n;
  };
  for (int i = 0; i < 200 && trash_left() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(trash_left(), 0u);
}

TEST_F(SpoolTest, NewIdsAfterReopenAreGreaterThanEveryRecoveredId) {
  MessageId last = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 5; ++i) {
      last = AcceptSync(*spool, Msg("a@example.org", {"b@example.com"}, "x", false));
    }
  }
  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 5u);
  MessageId max_recovered = 0;
  for (const auto& r : recovered) {
    max_recovered = std::max(max_recovered, r.id);
  }
  EXPECT_EQ(max_recovered, last);
  MessageId fresh = AcceptSync(*spool, Msg("a@example.org", {"b@example.com"}, "y", false));
  EXPECT_GT(fresh, max_recovered);
  EXPECT_EQ(FormatId(fresh).size(), 16u);
  EXPECT_LT(FormatId(max_recovered), FormatId(fresh));  // the text form sorts the same way
}

// An outcome reported twice (a retry racing a late reply, a replayed event) must not count as
// a second recipient: the message's other recipients stay pending and the spool still opens.
TEST_F(SpoolTest, DuplicateFinishOfTheSameRecipientIsHarmless) {
  MessageId id = 0;
  MessageId fence = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    id = AcceptSync(*spool,
                    Msg("a@example.org", {"r0@example.com", "r1@example.com"}, "body\r\n", false));
    spool->Finish(id, 0);
    spool->Finish(id, 0);
    // Requests commit in order: once a later Accept is durable, both Finishes have committed.
    fence = AcceptSync(*spool, Msg("f@example.org", {"f@example.com"}, "fence", false));
    // r1 is still pending: its message and body must still be there.
    EXPECT_EQ(spool->stats().pending_messages, 2u);
    Result<std::string> body = ReadBodySync(*spool, id);
    EXPECT_TRUE(body.has_value()) << "body of a message with a pending recipient: "
                                  << body.error().message();
    if (body.has_value()) {
      EXPECT_EQ(*body, "body\r\n");
    }
  }
  std::string error;
  auto reopened = Spool::Open({.path = dir_.path() + "/spool", .sync = true}, &error);
  ASSERT_TRUE(reopened.has_value()) << error;
  std::vector<RecoveredMessage> recovered;
  Result<void> r =
      (*reopened)->Recover([&](RecoveredMessage&& m) { recovered.push_back(std::move(m)); });
  ASSERT_TRUE(r.has_value()) << "Recover failed after a duplicate Finish: " << r.error().message();
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, id);
  ASSERT_EQ(recovered[0].recipients.size(), 1u);
  EXPECT_EQ(recovered[0].recipients[0].index, 1u);
  EXPECT_EQ(recovered[0].recipients[0].address, "r1@example.com");
  EXPECT_EQ(recovered[1].id, fence);
}

// A late Defer of a recipient already finished (a stale timer, an outcome racing a retry) must
// not bring the recipient back: once the last real recipient finishes, the message is gone and
// the spool still opens.
TEST_F(SpoolTest, DeferOfAFinishedRecipientDoesNotBringItBack) {
  MessageId id = 0;
  MessageId fence = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    id = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com", "r1@example.com"}, "b"));
    spool->Finish(id, 0);
    spool->Defer(id, 0, 1, 123);  // stale
    spool->Finish(id, 1);
    fence = AcceptSync(*spool, Msg("f@example.org", {"f@example.com"}, "fence"));
    EXPECT_EQ(spool->stats().pending_messages, 1u);
  }
  std::string error;
  auto reopened = Spool::Open({.path = dir_.path() + "/spool", .sync = true}, &error);
  ASSERT_TRUE(reopened.has_value()) << error;
  std::vector<RecoveredMessage> recovered;
  Result<void> r =
      (*reopened)->Recover([&](RecoveredMessage&& m) { recovered.push_back(std::move(m)); });
  ASSERT_TRUE(r.has_value()) << "Recover failed after a stale Defer: " << r.error().message();
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].id, fence);
}

TEST_F(SpoolTest, FinishAfterTheMessageIsGoneIsHarmless) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  MessageId id = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, "x", false));
  MessageId other = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, "y", false));
  spool->Finish(id, 0);
  WaitForStats(*spool, 1, 0);
  spool->Finish(id, 0);
  spool->Defer(id, 0, 1, 123);
  spool->Finish(id + 1'000'000'000, 0);  // never existed
  // A later message still commits, and the earlier ones did not disturb `other`.
  MessageId later = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, "z", false));
  EXPECT_GT(later, other);
  SpoolStats s = spool->stats();
  EXPECT_EQ(s.finished, 1u);
  EXPECT_EQ(s.deferred, 0u);
  EXPECT_EQ(s.pending_messages, 2u);
  spool.reset();

  std::vector<RecoveredMessage> recovered;
  spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, other);
  EXPECT_EQ(recovered[1].id, later);
}

TEST_F(SpoolTest, ReadBodyOfUnknownIdIsNotFound) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  Result<std::string> body = ReadBodySync(*spool, 42);
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error(), make_error_code(Errc::kNotFound));
  EXPECT_STREQ(body.error().category().name(), "spool");
}

TEST_F(SpoolTest, PendingMessagesTracksAcceptsFinishesAndRecovery) {
  std::vector<MessageId> ids;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    EXPECT_EQ(spool->stats().pending_messages, 0u);
    for (int i = 0; i < 4; ++i) {
      ids.push_back(AcceptSync(*spool, Msg("a@example.org", {"x@example.com", "y@example.com"},
                                           "body " + std::to_string(i), false)));
      EXPECT_EQ(spool->stats().pending_messages, static_cast<uint64_t>(i + 1));
    }
    spool->Finish(ids[0], 0);
    WaitForStats(*spool, 1, 0);
    EXPECT_EQ(spool->stats().pending_messages, 4u);  // one recipient left
    spool->Finish(ids[0], 1);
    spool->Finish(ids[2], 1);
    spool->Finish(ids[2], 0);
    WaitForStats(*spool, 4, 0);
    EXPECT_EQ(spool->stats().pending_messages, 2u);
  }
  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->stats().pending_messages, 2u);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, ids[1]);
  EXPECT_EQ(recovered[1].id, ids[3]);
}

// ---------------------------------------------------------------------------------------------
// Error paths: what the spool does with records it cannot read and with a write that fails.

// The spool's RocksDB opened directly, to leave what a damaged disk or a crash at the wrong
// moment would (the layouts are in queue/spool.h). Open only while no Spool has the directory.
class RawDb {
 public:
  enum Cf { kBody = 1, kEnvelope = 2, kRcpt = 3, kSuppression = 4, kBodyRef = 6 };

  explicit RawDb(const std::string& path) {
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}},
                                                        {"body", {}},
                                                        {"envelope", {}},
                                                        {"rcpt", {}},
                                                        {"suppression", {}},
                                                        {"state", {}},
                                                        {"body_ref", {}}};
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(), path, cfs, &handles_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
  }
  ~RawDb() {
    if (!db_)
      return;
    for (auto* h : handles_)
      db_->DestroyColumnFamilyHandle(h);
    EXPECT_TRUE(db_->Close().ok());
  }
  void Put(Cf cf, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    EXPECT_TRUE(db_->Put(wo, handles_[cf], key, value).ok());
  }
  void Delete(Cf cf, const std::string& key) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    EXPECT_TRUE(db_->Delete(wo, handles_[cf], key).ok());
  }
  std::optional<std::string> Get(Cf cf, const std::string& key) {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handles_[cf], key, &value);
    if (s.IsNotFound())
      return std::nullopt;
    EXPECT_TRUE(s.ok()) << s.ToString();
    return value;
  }
  size_t Count(Cf cf) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[cf]));
    size_t n = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next())
      ++n;
    return n;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

std::string Key(MessageId id, std::optional<uint32_t> index = std::nullopt) {
  std::string k;
  for (int i = 7; i >= 0; --i)
    k.push_back(static_cast<char>(id >> (8 * i)));
  for (int i = 3; index && i >= 0; --i)
    k.push_back(static_cast<char>(*index >> (8 * i)));
  return k;
}

class SpoolDamageTest : public SpoolTest {
 protected:
  std::string path() const { return dir_.path() + "/spool"; }

  // Recover() of the spool as it is on disk now: its result, and what it handed over.
  Result<void> Reopen(std::vector<RecoveredMessage>* recovered) {
    std::string error;
    Spool::Options o = options_;
    o.path = path();
    auto spool = Spool::Open(o, &error);
    EXPECT_TRUE(spool.has_value()) << error;
    if (!spool)
      return Unexpected{spool.error()};
    return (*spool)->Recover([&](RecoveredMessage&& m) { recovered->push_back(std::move(m)); });
  }

  // Two messages in the spool, closed again: `first_` (two recipients) and `second_` (one).
  void TwoMessages() {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    first_ = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com", "r1@example.com"}, "1"));
    second_ = AcceptSync(*spool, Msg("b@example.org", {"s0@example.com"}, "2"));
  }

  MessageId first_ = 0;
  MessageId second_ = 0;
};

TEST_F(SpoolDamageTest, AnEnvelopeThatDoesNotDecodeFailsRecovery) {
  TwoMessages();
  std::string envelope;
  {
    RawDb raw(path());
    envelope = raw.Get(RawDb::kEnvelope, Key(first_)).value_or("");
    ASSERT_GT(envelope.size(), 20u);
  }
  const std::string damaged[] = {
      envelope.substr(0, envelope.size() - 3),      // cut short inside the last recipient
      envelope.substr(0, 5),                        // cut short inside the header
      std::string(1, '\x04') + envelope.substr(1),  // a version this build does not know
  };
  for (const std::string& value : damaged) {
    { RawDb(path()).Put(RawDb::kEnvelope, Key(first_), value); }
    std::vector<RecoveredMessage> recovered;
    Result<void> r = Reopen(&recovered);
    ASSERT_FALSE(r.has_value()) << "a damaged envelope must stop the start, not be skipped";
    EXPECT_EQ(r.error(), make_error_code(Errc::kCorruption));
    EXPECT_TRUE(recovered.empty()) << "nothing is handed over before the damaged one";
  }
}

TEST_F(SpoolDamageTest, ARecipientRecordThatDoesNotDecodeFailsRecovery) {
  TwoMessages();
  const std::pair<uint32_t, std::string> damaged[] = {
      {0, "X"},      // neither deferred ('P') nor done ('D')
      {0, "P\x01"},  // deferred, cut short
      {0, ""},       // empty
      {2, "D"},      // a recipient the message does not have
  };
  for (const auto& [index, value] : damaged) {
    { RawDb(path()).Put(RawDb::kRcpt, Key(first_, index), value); }
    std::vector<RecoveredMessage> recovered;
    Result<void> r = Reopen(&recovered);
    ASSERT_FALSE(r.has_value()) << "record " << testing::PrintToString(value);
    EXPECT_EQ(r.error(), make_error_code(Errc::kCorruption));
    { RawDb(path()).Delete(RawDb::kRcpt, Key(first_, index)); }
  }
  std::vector<RecoveredMessage> recovered;
  ASSERT_TRUE(Reopen(&recovered).has_value()) << "the damage is gone: the spool opens again";
  EXPECT_EQ(recovered.size(), 2u);
}

// Every recipient finished but the envelope still there: the last Finish and the removal share a
// batch, so only damage leaves this. Recovery drops the message, body and records, for good.
TEST_F(SpoolDamageTest, AFinishedMessageLeftBehindIsRemoved) {
  TwoMessages();
  {
    RawDb raw(path());
    raw.Put(RawDb::kRcpt, Key(first_, 0), "D");
    raw.Put(RawDb::kRcpt, Key(first_, 1), "D");
  }
  std::vector<RecoveredMessage> recovered;
  ASSERT_TRUE(Reopen(&recovered).has_value());
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].id, second_);
  RawDb raw(path());
  EXPECT_FALSE(raw.Get(RawDb::kEnvelope, Key(first_)).has_value());
  EXPECT_FALSE(raw.Get(RawDb::kBody, Key(first_)).has_value());
  EXPECT_EQ(raw.Count(RawDb::kRcpt), 0u);
  EXPECT_TRUE(raw.Get(RawDb::kBody, Key(second_)).has_value());
}

// Recipient records whose message is gone (before the first message, between two, after the
// last): only damage leaves them. Recovery walks past them, hands over the messages as they
// are, and removes them.
TEST_F(SpoolDamageTest, StrayRecipientRecordsAreRemoved) {
  TwoMessages();
  {
    RawDb raw(path());
    raw.Put(RawDb::kRcpt, Key(first_ - 1, 0), "D");
    raw.Put(RawDb::kRcpt, Key(first_ + 1, 3), "P");  // garbage, but nobody's: not read
    raw.Put(RawDb::kRcpt, Key(second_ + 1, 0), "D");
    raw.Put(RawDb::kRcpt, Key(first_, 1), "D");  // the real one: r1 finished
  }
  std::vector<RecoveredMessage> recovered;
  Result<void> r = Reopen(&recovered);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, first_);
  ASSERT_EQ(recovered[0].recipients.size(), 1u);
  EXPECT_EQ(recovered[0].recipients[0].address, "r0@example.com");
  EXPECT_EQ(recovered[1].id, second_);
  RawDb raw(path());
  EXPECT_EQ(raw.Count(RawDb::kRcpt), 1u) << "only the record of a message still there is left";
  EXPECT_TRUE(raw.Get(RawDb::kRcpt, Key(first_, 1)).has_value());
}

TEST_F(SpoolDamageTest, AnEnvelopeKeyThatDoesNotDecodeIsSkipped) {
  TwoMessages();
  { RawDb(path()).Put(RawDb::kEnvelope, "abc", "whatever"); }
  std::vector<RecoveredMessage> recovered;
  Result<void> r = Reopen(&recovered);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, first_);
  EXPECT_EQ(recovered[1].id, second_);
}

// Keeps every file of this process under `bytes` until it goes out of scope (RLIMIT_FSIZE):
// a write past that fails with EFBIG, as on a full disk. SIGXFSZ is ignored meanwhile.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

// A commit that cannot be written (a full disk): every Accept of the batch gets the error and its
// message back, and none of the batch is stored, a Finish included.
TEST_F(SpoolDamageTest, AWriteThatFailsStoresNothingOfItsBatch) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  const std::string big(1 << 20, 'k');
  MessageId kept = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, big));
  Accepted failed;
  {
    // No file may grow: the log's next append fails, and so would opening the spool again.
    FileSizeLimit full(1);
    spool->Finish(kept, 0);
    std::promise<Accepted> done;
    auto future = done.get_future();
    spool->Accept(Msg("b@example.org", {"s0@example.com"}, std::string(10000, 'x')),
                  [&done](Result<MessageId> id, NewMessage&& back) {
                    done.set_value(Accepted{std::move(id), std::move(back)});
                  });
    ASSERT_EQ(future.wait_for(kDeadline), std::future_status::ready);
    failed = future.get();
    spool.reset();  // stops the commit thread while the limit still holds
  }
  ASSERT_FALSE(failed.id.has_value()) << "the commit could not be written";
  EXPECT_EQ(failed.id.error(), make_error_code(Errc::kIo));
  EXPECT_EQ(failed.message.mail_from, "b@example.org") << "the message comes back to retry";
  EXPECT_EQ(failed.message.body, std::string(10000, 'x'));

  std::vector<RecoveredMessage> recovered;
  ASSERT_TRUE(Reopen(&recovered).has_value());
  ASSERT_EQ(recovered.size(), 1u) << "the failed message was not stored";
  EXPECT_EQ(recovered[0].id, kept);
  ASSERT_EQ(recovered[0].recipients.size(), 1u) << "nor the Finish beside it";
}

// The file system's free space as a test sets it ([spool] min_free_space against statvfs).
class FakeDisk {
 public:
  static constexpr uint64_t kTotal = uint64_t{1} << 30;
  void Set(uint64_t free_bytes) { free_.store(free_bytes); }
  int checks() const { return checks_.load(); }
  std::function<bool(uint64_t*, uint64_t*)> Probe() {
    return [this](uint64_t* free_bytes, uint64_t* total) {
      checks_.fetch_add(1);
      *free_bytes = free_.load();
      *total = kTotal;
      return true;
    };
  }

 private:
  std::atomic<uint64_t> free_{kTotal / 2};
  std::atomic<int> checks_{0};
};

class SpoolHealthTest : public SpoolTest {
 protected:
  static constexpr uint64_t kMB = 1 << 20;

  std::unique_ptr<Spool> OpenWith(std::chrono::milliseconds interval) {
    Spool::Options o;
    o.path = dir_.path() + "/spool";
    o.min_free_bytes = 100 * kMB;
    o.min_free_ratio = 0.05;  // 51 MB of the fake 1 GB: the bytes win
    o.check_interval = interval;
    o.free_space = disk_.Probe();
    std::string error;
    auto spool = Spool::Open(o, &error);
    EXPECT_TRUE(spool.has_value()) << error;
    if (!spool)
      return nullptr;
    EXPECT_TRUE((*spool)->Recover([](RecoveredMessage&&) {}).has_value());
    (*spool)->Start();
    return std::move(spool).value();
  }

  static Accepted AcceptResult(Spool& spool, NewMessage message) {
    std::promise<Accepted> done;
    auto future = done.get_future();
    spool.Accept(std::move(message), [&done](Result<MessageId> id, NewMessage&& back) {
      done.set_value(Accepted{std::move(id), std::move(back)});
    });
    EXPECT_EQ(future.wait_for(kDeadline), std::future_status::ready);
    return future.get();
  }

  static bool WaitForHealth(const Spool& spool, Health want) {
    auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (spool.health() != want && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return spool.health() == want;
  }

  FakeDisk disk_;
};

// The body log keeps released segments to write again (body_log.h); short of space, they are
// the first thing the spool gives back.
TEST_F(SpoolHealthTest, UnderTheWatermarkTheBodyLogsSpareSegmentsAreDeleted) {
  const std::string bodies = dir_.path() + "/spool/bodies";
  std::filesystem::create_directories(bodies);
  { std::ofstream(bodies + "/00000005.spare") << std::string(4096, 'x'); }
  auto spool = OpenWith(std::chrono::milliseconds(5));
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(std::filesystem::exists(bodies + "/00000005.spare")) << "kept while there is room";
  disk_.Set(99 * kMB);
  ASSERT_TRUE(WaitForHealth(*spool, Health::kLowSpace));
  EXPECT_FALSE(std::filesystem::exists(bodies + "/00000005.spare"));
}

// Under the watermark new messages are refused (kNoSpace, which the session answers 452 4.3.1)
// while outcomes are still written, since deliveries free space; once there is room again, with
// a twentieth to spare, the spool accepts by itself.
TEST_F(SpoolHealthTest, UnderTheWatermarkNewMailIsRefusedOutcomesAreWrittenAndItRecovers) {
  auto spool = OpenWith(std::chrono::milliseconds(5));
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->health(), Health::kOk);
  const MessageId kept = AcceptSync(*spool, Msg("a@example.org", {"r0@x.test", "r1@x.test"}, "hi"));

  disk_.Set(99 * kMB);
  ASSERT_TRUE(WaitForHealth(*spool, Health::kLowSpace));
  Accepted refused = AcceptResult(*spool, Msg("b@example.org", {"s@x.test"}, "later"));
  ASSERT_FALSE(refused.id.has_value());
  EXPECT_EQ(refused.id.error(), make_error_code(Errc::kNoSpace));
  EXPECT_TRUE(refused.id.error() == std::errc::no_space_on_device)
      << "what the session tells apart";
  EXPECT_EQ(refused.message.body, "later") << "the message comes back";
  spool->Finish(kept, 0);
  spool->Defer(kept, 1, 1, 12345);
  WaitForStats(*spool, 1, 1);

  disk_.Set(102 * kMB);  // over the mark, not by a twentieth: still refusing
  const int checks = disk_.checks();
  while (disk_.checks() < checks + 3)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(spool->health(), Health::kLowSpace);
  disk_.Set(106 * kMB);
  ASSERT_TRUE(WaitForHealth(*spool, Health::kOk));
  AcceptSync(*spool, Msg("c@example.org", {"t@x.test"}, "now"));
  SpoolStats st = spool->stats();
  EXPECT_EQ(st.refused, 1u);
  EXPECT_EQ(st.free_bytes, 106 * kMB);
  EXPECT_EQ(st.health, Health::kOk);
}

// RocksDB stopping writes (compaction behind: a column family's WriteStallCondition::kStopped)
// makes the spool kStalled, which the server answers 451 4.3.0 at MAIL; commits made meanwhile
// are not refused (RocksDB holds them until it writes again); the end of the stop ends it.
TEST_F(SpoolHealthTest, AWriteStopFromRocksDbIsSaidAtOnceAndEndsWithIt) {
  auto spool = OpenWith(std::chrono::milliseconds(5));
  ASSERT_NE(spool, nullptr);
  std::shared_ptr<rocksdb::EventListener> listener = spool->listener_for_testing();
  ASSERT_NE(listener, nullptr);
  rocksdb::WriteStallInfo stop;
  stop.cf_name = "body";
  stop.condition.prev = rocksdb::WriteStallCondition::kNormal;
  stop.condition.cur = rocksdb::WriteStallCondition::kStopped;
  listener->OnStallConditionsChanged(stop);
  ASSERT_TRUE(WaitForHealth(*spool, Health::kStalled));
  EXPECT_STREQ(HealthName(spool->health()), "stalled");
  AcceptSync(*spool, Msg("a@example.org", {"r@x.test"}, "during the stop"));
  rocksdb::WriteStallInfo go = stop;
  go.condition.prev = rocksdb::WriteStallCondition::kStopped;
  go.condition.cur = rocksdb::WriteStallCondition::kDelayed;  // slowed down is no stop
  listener->OnStallConditionsChanged(go);
  ASSERT_TRUE(WaitForHealth(*spool, Health::kOk));
}

// A burst between two checks: a batch that would take the disk under the watermark, counting
// what the spool wrote since it last looked, makes it look again at once, and is refused if it
// still would; the spool then counts as under the mark.
TEST_F(SpoolHealthTest, ABatchThatWouldCrossTheWatermarkIsRefusedBeforeItIsWritten) {
  disk_.Set(104 * kMB);                          // 4 MB over the mark when the spool opens
  auto spool = OpenWith(std::chrono::hours(1));  // no periodic check during the test
  ASSERT_NE(spool, nullptr);
  const std::string two_mb(2 * kMB, 'b');
  AcceptSync(*spool, Msg("a@example.org", {"r@x.test"}, two_mb));  // fits: 102 MB left
  disk_.Set(102 * kMB);                                            // what that write took
  const int checks = disk_.checks();
  Accepted big = AcceptResult(*spool, Msg("a@example.org", {"r@x.test"}, two_mb + "x"));
  ASSERT_FALSE(big.id.has_value());
  EXPECT_EQ(big.id.error(), make_error_code(Errc::kNoSpace));
  EXPECT_EQ(disk_.checks(), checks + 1) << "looked again before writing";
  // As good as at the mark: refused from MAIL on (low_space) until a check finds room.
  EXPECT_EQ(spool->health(), Health::kLowSpace);
}

// A batch whose write fails (here: RLIMIT_FSIZE, EFBIG, as a full disk would) loses none of its
// outcomes: the spool turns kFailed (new mail gets kIo: 451 4.3.0), tries again every check
// interval, and once the disk takes writes again the Finish is written and mail is accepted.
TEST_F(SpoolDamageTest, AFailedBatchWritesItsOutcomesOnceTheDiskTakesWritesAgain) {
  Spool::Options o;
  o.path = path();
  o.min_free_bytes = 0;
  o.min_free_ratio = 0;
  o.check_interval = std::chrono::milliseconds(20);
  std::string error;
  auto opened = Spool::Open(o, &error);
  ASSERT_TRUE(opened.has_value()) << error;
  std::unique_ptr<Spool> spool = std::move(opened).value();
  ASSERT_TRUE(spool->Recover([](RecoveredMessage&&) {}).has_value());
  spool->Start();
  const std::string big(1 << 20, 'k');
  MessageId kept = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, big));
  {
    // No file may grow at all: the log's next append fails, and so does opening the spool
    // again (it writes new files), until the limit goes.
    FileSizeLimit full(1);
    spool->Finish(kept, 0);
    auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (spool->stats().write_errors == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_GE(spool->stats().write_errors, 1u);
    EXPECT_EQ(spool->health(), Health::kFailed);
    EXPECT_EQ(spool->stats().finished, 0u);
    std::promise<Accepted> done;
    auto future = done.get_future();
    spool->Accept(Msg("b@example.org", {"s0@example.com"}, "x"),
                  [&done](Result<MessageId> id, NewMessage&& back) {
                    done.set_value(Accepted{std::move(id), std::move(back)});
                  });
    ASSERT_EQ(future.wait_for(kDeadline), std::future_status::ready);
    Accepted refused = future.get();
    ASSERT_FALSE(refused.id.has_value());
    EXPECT_EQ(refused.id.error(), make_error_code(Errc::kIo));
  }
  // The disk takes writes again: the Finish goes in, and new mail with it.
  WaitForStats(*spool, 1, 0);
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (spool->health() != Health::kOk && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(spool->health(), Health::kOk);
  EXPECT_GE(spool->stats().outcomes_retried, 1u);
  MessageId later = AcceptSync(*spool, Msg("c@example.org", {"t0@example.com"}, "y"));
  spool.reset();

  std::vector<RecoveredMessage> recovered;
  ASSERT_TRUE(Reopen(&recovered).has_value());
  ASSERT_EQ(recovered.size(), 1u) << "the finished message is gone, the new one is there";
  EXPECT_EQ(recovered[0].id, later);
}

// ---------------------------------------------------------------------------------------------
// The body log ([spool] body_log_min_size): large bodies in append-only segments, RocksDB
// holding where.

class SpoolBodyLogTest : public SpoolDamageTest {
 protected:
  void SetUp() override {
    SpoolDamageTest::SetUp();
    options_.body_log_min_bytes = 1000;
  }
  std::string bodies() const { return path() + "/bodies"; }
  // The segments (NNNNNNNN.body), or the spares kept to be written again (NNNNNNNN.spare).
  std::vector<std::string> Segments(const std::string& suffix = ".body") const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(bodies(), ec)) {
      if (e.path().extension() == suffix)
        out.push_back(e.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<std::string> Spares() const { return Segments(".spare"); }

  // Segments of 8,000 bytes compacted as soon as they are sparse, and only by a batch with work
  // in it (no idle turn for 5 s); three 5,000-byte bodies a, b, z accepted: segment 1 holds a
  // and b (full), segment 2 z (the one being written).
  std::unique_ptr<Spool> OpenWithThreeBodies(MessageId* a, MessageId* b, MessageId* z) {
    options_.body_log_segment_bytes = 8000;
    options_.body_log_compact_after = std::chrono::milliseconds(0);
    options_.check_interval = std::chrono::seconds(5);
    auto spool = Open();
    if (spool == nullptr)
      return nullptr;
    const auto accept = [&](char c) {
      return AcceptSync(*spool, Msg("s@example.org", {"r@example.com"}, std::string(5000, c)));
    };
    *a = accept('a');
    *b = accept('b');
    *z = accept('z');
    EXPECT_EQ(Segments(), (std::vector<std::string>{"00000001.body", "00000002.body"}));
    return spool;
  }
};

TEST_F(SpoolBodyLogTest, LargeBodiesGoToTheLogSmallOnesToRocksDbAndBothComeBackAfterReopen) {
  const std::string large = BinaryBody(3) + std::string(5000, 'L');
  const std::string small = BinaryBody(4);
  ASSERT_LT(small.size(), 1000u);
  MessageId large_id = 0;
  MessageId small_id = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    large_id = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, large));
    small_id = AcceptSync(*spool, Msg("b@example.org", {"s0@example.com"}, small));
    EXPECT_EQ(spool->stats().body_log_segments, 1u);
    EXPECT_EQ(spool->stats().body_log_bytes, BodyLog::kHeaderSize + large.size())
        << "only the large body is in the log";
    Result<std::string> body = ReadBodySync(*spool, large_id);
    ASSERT_TRUE(body.has_value()) << body.error().message();
    EXPECT_EQ(*body, large);
  }
  {
    RawDb raw(path());
    EXPECT_FALSE(raw.Get(RawDb::kBody, Key(large_id))) << "RocksDB holds no copy of it";
    EXPECT_TRUE(raw.Get(RawDb::kBodyRef, Key(large_id)));
    EXPECT_EQ(raw.Get(RawDb::kBody, Key(small_id)), small);
    EXPECT_FALSE(raw.Get(RawDb::kBodyRef, Key(small_id)));
  }
  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].body_size, large.size());
  Result<std::string> body = ReadBodySync(*spool, large_id);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, large);
  body = ReadBodySync(*spool, small_id);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, small);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000001.body"})
      << "the segment its pending body is in stays; a new one is opened only to write";
}

TEST_F(SpoolBodyLogTest, ASegmentGoesWithTheLastMessageInItOnceItIsFull) {
  options_.body_log_segment_bytes = 8000;  // full after two 5,000-byte bodies
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  std::vector<MessageId> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(AcceptSync(*spool, Msg("a@example.org", {"r0@example.com", "r1@example.com"},
                                         std::string(5000, static_cast<char>('a' + i)))));
  EXPECT_EQ(Segments(),
            (std::vector<std::string>{"00000001.body", "00000002.body", "00000003.body"}))
      << "one batch each (AcceptSync), a segment full at its second body";
  // A recipient of each: nothing goes, their messages still need their bodies.
  for (MessageId id : ids)
    spool->Finish(id, 0);
  WaitForStats(*spool, 5, 0);
  EXPECT_EQ(Segments().size(), 3u);
  // The whole of message 0; message 1 is in the same full segment: it stays.
  spool->Finish(ids[0], 1);
  WaitForStats(*spool, 6, 0);
  EXPECT_EQ(Segments().size(), 3u);
  spool->Finish(ids[1], 1);
  spool->Finish(ids[4], 1);  // in the segment being written: it stays, empty
  WaitForStats(*spool, 8, 0);
  EXPECT_EQ(Segments(), (std::vector<std::string>{"00000002.body", "00000003.body"}));
  EXPECT_EQ(Spares(), std::vector<std::string>{"00000001.spare"})
      << "the segment that went is kept, to be written again";
  Result<std::string> body = ReadBodySync(*spool, ids[2]);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, std::string(5000, 'c'));
  body = ReadBodySync(*spool, ids[0]);
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error(), make_error_code(Errc::kNotFound));
  spool.reset();

  std::vector<RecoveredMessage> recovered;
  spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, ids[2]);
  EXPECT_EQ(recovered[1].id, ids[3]);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000002.body"})
      << "at start-up, the empty segment that was being written goes";
  EXPECT_EQ(Spares(), (std::vector<std::string>{"00000001.spare", "00000003.spare"}));
  MessageId next =
      AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, std::string(3000, 'z')));
  EXPECT_EQ(Segments().back(), "00000004.body") << "never appended to after a restart";
  EXPECT_EQ(Spares().size(), 1u) << "the new segment is a spare renamed";
  body = ReadBodySync(*spool, next);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, std::string(3000, 'z'));
  // Written over the spare's first body: what it held past that is no body of anyone's, and
  // the messages come back whole after one more restart.
  EXPECT_GT(std::filesystem::file_size(bodies() + "/00000004.body"), 3000u + 24u);
  spool.reset();
  recovered.clear();
  spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 3u);
  EXPECT_EQ(recovered[2].id, next);
  body = ReadBodySync(*spool, next);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, std::string(3000, 'z'));
  body = ReadBodySync(*spool, ids[3]);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, std::string(5000, 'd'));
}

// Segments held by one message in two (deferred ones, say) are compacted: the bodies still
// needed move to the segment being written, and the old segments go; nothing of those bodies is
// lost, before or after a restart. Idle, the spool does it on its check interval.
TEST_F(SpoolBodyLogTest, SparseSegmentsAreCompactedTheirBodiesMovedAndTheyGo) {
  options_.body_log_segment_bytes = 8000;  // full after two 5,000-byte bodies
  options_.body_log_compact_after = std::chrono::milliseconds(0);
  options_.check_interval = std::chrono::milliseconds(5);
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  std::vector<MessageId> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"},
                                         std::string(5000, static_cast<char>('a' + i)))));
  EXPECT_EQ(Segments(),
            (std::vector<std::string>{"00000001.body", "00000002.body", "00000003.body"}));
  EXPECT_EQ(spool->stats().bodies_moved, 0u) << "every segment full of needed bodies";
  for (int i = 0; i < 6; i += 2)
    spool->Finish(ids[static_cast<size_t>(i)], 0);
  WaitForStats(*spool, 3, 0);
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (spool->stats().bodies_moved < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(spool->stats().bodies_moved, 3u);
  // 1 and 2 moved into a new segment 4 (full with them), 3 into 5 (a spare written again).
  EXPECT_EQ(Segments(), (std::vector<std::string>{"00000004.body", "00000005.body"}));
  EXPECT_EQ(Spares().size(), 2u);
  for (int i = 1; i < 6; i += 2) {
    SCOPED_TRACE("message " + std::to_string(i));
    Result<std::string> body = ReadBodySync(*spool, ids[static_cast<size_t>(i)]);
    ASSERT_TRUE(body.has_value()) << body.error().message();
    EXPECT_EQ(*body, std::string(5000, static_cast<char>('a' + i)));
  }
  spool->Finish(ids[1], 0);  // a moved message finished: its new segment keeps the other
  WaitForStats(*spool, 4, 0);
  EXPECT_EQ(Segments(), (std::vector<std::string>{"00000004.body", "00000005.body"}));
  spool.reset();

  std::vector<RecoveredMessage> recovered;
  spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 2u);
  EXPECT_EQ(recovered[0].id, ids[3]);
  EXPECT_EQ(recovered[1].id, ids[5]);
  // Both are sparse after the restart: 4 holds one body of its two, and 5, a spare written
  // again, one body in a file of two (its size counts what the spare held). 3 and 5 move on,
  // to a new segment 6.
  const auto again = std::chrono::steady_clock::now() + kDeadline;
  while (spool->stats().bodies_moved < 2 && std::chrono::steady_clock::now() < again)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(spool->stats().bodies_moved, 2u);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000006.body"});
  for (int i = 3; i < 6; i += 2) {
    Result<std::string> body = ReadBodySync(*spool, ids[static_cast<size_t>(i)]);
    ASSERT_TRUE(body.has_value()) << body.error().message();
    EXPECT_EQ(*body, std::string(5000, static_cast<char>('a' + i)));
  }
  // One of 6's two finished: 6 is sparse in its turn, and its other body moves on, to 7 (one
  // body: not full, the segment being written). 6 goes with it; 7 stays, empty, when the last
  // message finishes (it is still the one being written).
  spool->Finish(ids[3], 0);
  WaitForStats(*spool, 1, 0);
  const auto third = std::chrono::steady_clock::now() + kDeadline;
  while (spool->stats().bodies_moved < 3 && std::chrono::steady_clock::now() < third)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(spool->stats().bodies_moved, 3u);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000007.body"}) << "6 gone with its move";
  Result<std::string> last = ReadBodySync(*spool, ids[5]);
  ASSERT_TRUE(last.has_value()) << last.error().message();
  EXPECT_EQ(*last, std::string(5000, 'f'));
  spool->Finish(ids[5], 0);
  WaitForStats(*spool, 2, 0);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000007.body"});
}

// One batch that moves a body into the segment being written, fills it, and finishes the
// last message that segment held before: the moved body's new ref is on disk, so its segment
// must stay (it is retained before anything of the batch is released; released first, it
// counted no live body, went, and was written again as a spare: the moved message lost).
TEST_F(SpoolBodyLogTest, ABodyMovedIntoASegmentInTheBatchThatReleasesItsOtherBodiesStays) {
  MessageId ida = 0, idb = 0, idz = 0;
  auto spool = OpenWithThreeBodies(&ida, &idb, &idz);
  ASSERT_NE(spool, nullptr);
  const std::string b(5000, 'b');
  spool->Finish(ida, 0);  // 1 is sparse now: b is to move, with the next batch
  WaitForStats(*spool, 1, 0);
  ASSERT_EQ(spool->stats().bodies_moved, 0u) << "moved by an idle turn: the test needs it not";
  spool->Finish(idz, 0);  // that batch: b moves into 2 (which it fills) and z leaves 2
  WaitForStats(*spool, 2, 0);
  ASSERT_EQ(spool->stats().bodies_moved, 1u);
  Result<std::string> body = ReadBodySync(*spool, idb);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, b);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000002.body"});
  spool.reset();
  std::vector<RecoveredMessage> recovered;
  spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].id, idb);
  EXPECT_EQ(spool->stats().lost_bodies, 0u);
  body = ReadBodySync(*spool, idb);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, b);
}

// A batch that fills the segment being written with moved bodies whose messages it also
// finishes: nothing in that segment is named any more, and no later release would reach it, so
// it goes with the batch (it stayed on disk until the next restart).
TEST_F(SpoolBodyLogTest, ASegmentFilledByMovedBodiesThatFinishInTheSameBatchGoes) {
  MessageId ida = 0, idb = 0, idz = 0;
  auto spool = OpenWithThreeBodies(&ida, &idb, &idz);
  ASSERT_NE(spool, nullptr);
  spool->Finish(idz, 0);  // 2 holds nothing needed, and stays: it is the one being written
  WaitForStats(*spool, 1, 0);
  spool->Finish(ida, 0);  // 1 is sparse: b is to move, with the next batch
  WaitForStats(*spool, 2, 0);
  ASSERT_EQ(spool->stats().bodies_moved, 0u) << "moved by an idle turn: the test needs it not";
  spool->Finish(idb, 0);  // that batch: b moves into 2 (filling it) and b finishes
  WaitForStats(*spool, 3, 0);
  EXPECT_EQ(Segments(), std::vector<std::string>{}) << "a full segment nothing names is left";
  EXPECT_EQ(spool->stats().body_log_segments, 0u);
}

// A segment already sparse when the spool stopped is found sparse after the restart: how many
// bodies it held is estimated from its size and those still needed.
TEST_F(SpoolBodyLogTest, ASegmentSparseBeforeARestartIsCompactedAfterIt) {
  options_.body_log_segment_bytes = 20000;  // full after four 5,000-byte bodies
  std::vector<MessageId> ids;
  {
    auto spool = Open();  // compaction after 10 minutes: not in this test's time
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 4; ++i)
      ids.push_back(AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"},
                                           std::string(5000, static_cast<char>('a' + i)))));
    for (int i = 0; i < 3; ++i)
      spool->Finish(ids[static_cast<size_t>(i)], 0);
    WaitForStats(*spool, 3, 0);
    EXPECT_EQ(spool->stats().bodies_moved, 0u);
  }
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000001.body"});
  options_.body_log_compact_after = std::chrono::milliseconds(0);
  options_.check_interval = std::chrono::milliseconds(5);
  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 1u);
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (spool->stats().bodies_moved < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(spool->stats().bodies_moved, 1u);
  EXPECT_EQ(Segments(), std::vector<std::string>{"00000002.body"});
  Result<std::string> body = ReadBodySync(*spool, ids[3]);
  ASSERT_TRUE(body.has_value()) << body.error().message();
  EXPECT_EQ(*body, std::string(5000, 'd'));
}

TEST_F(SpoolBodyLogTest, ASegmentNoMessageNamesIsRemovedAtStartUp) {
  TwoMessages();  // small bodies: none in the log
  {
    // What a batch whose records never reached RocksDB leaves behind.
    std::FILE* f = std::fopen((bodies() + "/00000009.body").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("SPB1 torn", f);
    std::fclose(f);
  }
  std::vector<RecoveredMessage> recovered;
  ASSERT_TRUE(Reopen(&recovered).has_value());
  EXPECT_EQ(recovered.size(), 2u);
  EXPECT_TRUE(Segments().empty());
  EXPECT_EQ(Spares(), std::vector<std::string>{"00000009.spare"});
}

TEST_F(SpoolBodyLogTest, AMessageWhoseSegmentIsGoneIsLoggedAndRemovedTheOthersStay) {
  MessageId large_id = 0;
  MessageId small_id = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    large_id = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, std::string(4000, 'x')));
    small_id = AcceptSync(*spool, Msg("b@example.org", {"s0@example.com"}, "small"));
  }
  std::filesystem::remove(bodies() + "/00000001.body");
  {
    std::vector<RecoveredMessage> recovered;
    auto spool = OpenAndRecover(&recovered);
    ASSERT_NE(spool, nullptr);
    ASSERT_EQ(recovered.size(), 1u);
    EXPECT_EQ(recovered[0].id, small_id);
    EXPECT_EQ(spool->stats().lost_bodies, 1u);
  }
  RawDb raw(path());
  EXPECT_FALSE(raw.Get(RawDb::kEnvelope, Key(large_id))) << "removed, not tried every minute";
  EXPECT_FALSE(raw.Get(RawDb::kBodyRef, Key(large_id)));
  EXPECT_TRUE(raw.Get(RawDb::kEnvelope, Key(small_id)));
}

TEST_F(SpoolBodyLogTest, ABodyDamagedOnDiskIsNotHandedOut) {
  MessageId id = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    id = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, std::string(4000, 'x')));
  }
  {
    std::FILE* f = std::fopen((bodies() + "/00000001.body").c_str(), "r+");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 2000, SEEK_SET);
    std::fputc('y', f);
    std::fclose(f);
  }
  std::vector<RecoveredMessage> recovered;
  auto spool = OpenAndRecover(&recovered);
  ASSERT_NE(spool, nullptr);
  ASSERT_EQ(recovered.size(), 1u) << "the size is right: it is found at its read";
  Result<std::string> body = ReadBodySync(*spool, id);
  ASSERT_FALSE(body.has_value());
  EXPECT_EQ(body.error(), make_error_code(Errc::kCorruption));
}

TEST_F(SpoolBodyLogTest, OffKeepsEveryBodyInRocksDb) {
  options_.body_log_min_bytes = UINT64_MAX;
  MessageId id = 0;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    id = AcceptSync(*spool, Msg("a@example.org", {"r0@example.com"}, std::string(200000, 'x')));
    EXPECT_EQ(spool->stats().body_log_segments, 0u);
  }
  EXPECT_TRUE(Segments().empty());
  RawDb raw(path());
  EXPECT_EQ(raw.Get(RawDb::kBody, Key(id)), std::string(200000, 'x'));
}

TEST(SpoolErrcTest, EachErrorSaysWhatFailed) {
  EXPECT_EQ(make_error_code(Errc::kIo).message(), "spool I/O error");
  EXPECT_EQ(make_error_code(Errc::kCorruption).message(), "spool record corrupt");
  EXPECT_EQ(make_error_code(Errc::kNotFound).message(), "spool record not found");
  EXPECT_EQ(make_error_code(Errc::kShutdown).message(), "spool shutting down");
  EXPECT_EQ(make_error_code(Errc::kNoSpace).message(),
            "spool file system full (under min_free_space)");
  EXPECT_EQ(make_error_code(Errc::kInvalid).message(), "spool input invalid");
  EXPECT_EQ(make_error_code(Errc::kDisabled).message(), "suppression list off");
  EXPECT_EQ(make_error_code(Errc::kInUse).message(), "spool in use by another process");
  EXPECT_EQ(std::error_code(99, ErrorCategory()).message(), "spool error");
}

TEST(SpoolOpenTest, UnopenablePathFailsWithAMessage) {
  std::string error;
  auto spool = Spool::Open({.path = "/proc/spool_test_cannot_create_this", .sync = true}, &error);
  ASSERT_FALSE(spool.has_value());
  EXPECT_EQ(spool.error(), make_error_code(Errc::kIo));
  EXPECT_NE(error.find("/proc/spool_test_cannot_create_this"), std::string::npos) << error;
}

TEST(FormatIdTest, SixteenLowerCaseHexDigits) {
  EXPECT_EQ(FormatId(0), "0000000000000000");
  EXPECT_EQ(FormatId(0x5f1c2a3b4c5d6ull), "0005f1c2a3b4c5d6");
  EXPECT_EQ(FormatId(~0ull), "ffffffffffffffff");
}

}  // namespace
}  // namespace spate::queue
