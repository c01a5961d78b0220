// tests/unit/signing_store_test.cc
//
// server::SigningStore (core/server/signing.h), in front of a store that records what reaches
// it: a message of a signed domain reaches the spool signed, from a worker thread, and its
// `done` is the caller's; one of no entry's domain reaches it unchanged, and so does every
// message while no signer is set; one that cannot be signed (no From:) goes on unsigned and is
// counted; a reload's signer applies to the next message; Stop() drops what still waits and
// never runs its callback.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/server/signing.h"

namespace spate::server {
namespace {

using namespace std::chrono_literals;

// RFC 8032 §7.1 test 1's secret key (public: used only by tests).
constexpr const char* kEd25519Pem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

std::shared_ptr<const dkim::Signer> SignerFor(const std::string& domain,
                                              const std::string& selector) {
  dkim::KeySpec spec;
  spec.domain = domain;
  spec.selector = selector;
  spec.key_file = "test.pem";
  std::string error;
  std::optional<dkim::Signer> s = dkim::Signer::CreateFromPem({spec}, {kEd25519Pem}, &error);
  EXPECT_TRUE(s.has_value()) << error;
  return std::make_shared<const dkim::Signer>(std::move(*s));
}

// Keeps what reaches it, and the thread it came on; answers at once with an id.
class RecordingStore final : public MessageStore {
 public:
  void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) override {
    {
      std::lock_guard lock(mu_);
      bodies_.push_back(message.body);
      threads_.push_back(std::this_thread::get_id());
    }
    done(queue::MessageId{static_cast<queue::MessageId>(++n_)}, std::move(message));
    {
      std::lock_guard lock(mu_);
      ++answered_;
    }
    cv_.notify_all();
  }
  // The first `count` bodies, once there and answered (bounded wait): every `done` of them has
  // returned, on whichever worker it ran.
  std::vector<std::string> Wait(size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 10s, [&] { return answered_ >= count; });
    return bodies_;
  }
  std::thread::id thread(size_t i) {
    std::lock_guard lock(mu_);
    return threads_.at(i);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> bodies_;
  std::vector<std::thread::id> threads_;
  size_t answered_ = 0;  // under mu_
  std::atomic<int> n_{0};
};

queue::NewMessage MessageFrom(const std::string& from) {
  queue::NewMessage m;
  m.mail_from = "a@" + from;
  m.rcpt_to = {"b@dest.test"};
  m.body = "From: a@" + from + "\r\nSubject: hi\r\n\r\nhello\r\n";
  return m;
}

TEST(SigningStoreTest, ASignedDomainsMessageReachesTheStoreSignedFromAWorker) {
  RecordingStore inner;
  SigningStore store(inner, 2, [] { return int64_t{1764600000}; });
  store.SetSigner(SignerFor("shop.test", "s1"));
  std::atomic<int> done{0};
  store.Accept(MessageFrom("shop.test"), [&](Result<queue::MessageId> id, queue::NewMessage&&) {
    EXPECT_TRUE(id.has_value());
    ++done;
  });
  store.Accept(MessageFrom("other.test"),
               [&](Result<queue::MessageId>, queue::NewMessage&&) { ++done; });
  std::vector<std::string> bodies = inner.Wait(2);
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(done.load(), 2);
  const std::string& signed_one =
      bodies[0].find("shop.test\r\nSubject") != std::string::npos ? bodies[0] : bodies[1];
  const std::string& other = &signed_one == &bodies[0] ? bodies[1] : bodies[0];
  EXPECT_EQ(signed_one.rfind("DKIM-Signature: v=1; a=ed25519-sha256;", 0), 0u) << signed_one;
  EXPECT_NE(signed_one.find(" d=shop.test;"), std::string::npos);
  EXPECT_NE(signed_one.find("t=1764600000;"), std::string::npos);
  EXPECT_NE(signed_one.find("\r\nFrom: a@shop.test\r\nSubject: hi\r\n\r\nhello\r\n"),
            std::string::npos)
      << "the message follows its signature unchanged";
  EXPECT_EQ(other, "From: a@other.test\r\nSubject: hi\r\n\r\nhello\r\n");
  EXPECT_NE(inner.thread(0), std::this_thread::get_id()) << "signed off the caller's thread";
  auto counts = store.signed_counts();
  EXPECT_EQ((counts[{"shop.test", "ed25519-sha256"}]), 1u);
  EXPECT_EQ(store.failures(), 0u);
}

TEST(SigningStoreTest, WithoutASignerMessagesGoStraightThroughOnTheCallersThread) {
  RecordingStore inner;
  SigningStore store(inner, 1);
  store.Accept(MessageFrom("shop.test"), [](Result<queue::MessageId>, queue::NewMessage&&) {});
  ASSERT_EQ(inner.Wait(1).size(), 1u);
  EXPECT_EQ(inner.thread(0), std::this_thread::get_id());
  EXPECT_EQ(inner.Wait(1)[0].find("DKIM-Signature"), std::string::npos);
}

TEST(SigningStoreTest, AMessageThatCannotBeSignedGoesOnUnsignedAndIsCounted) {
  RecordingStore inner;
  SigningStore store(inner, 1);
  store.SetSigner(SignerFor("shop.test", "s1"));
  queue::NewMessage m = MessageFrom("shop.test");
  m.body = "Subject: no From at all\r\n\r\nhello\r\n";
  store.Accept(std::move(m), [](Result<queue::MessageId>, queue::NewMessage&&) {});
  std::vector<std::string> bodies = inner.Wait(1);
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(bodies[0], "Subject: no From at all\r\n\r\nhello\r\n");
  EXPECT_EQ(store.failures(), 1u);
  EXPECT_TRUE(store.signed_counts().empty());
}

TEST(SigningStoreTest, AReloadedSignerSignsTheNextMessage) {
  RecordingStore inner;
  SigningStore store(inner, 1);
  store.SetSigner(SignerFor("shop.test", "old"));
  store.Accept(MessageFrom("shop.test"), [](Result<queue::MessageId>, queue::NewMessage&&) {});
  ASSERT_EQ(inner.Wait(1).size(), 1u);
  store.SetSigner(SignerFor("shop.test", "new"));
  store.Accept(MessageFrom("shop.test"), [](Result<queue::MessageId>, queue::NewMessage&&) {});
  std::vector<std::string> bodies = inner.Wait(2);
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_NE(bodies[0].find(" s=old;"), std::string::npos);
  EXPECT_NE(bodies[1].find(" s=new;"), std::string::npos);
  store.SetSigner(nullptr);
  store.Accept(MessageFrom("shop.test"), [](Result<queue::MessageId>, queue::NewMessage&&) {});
  bodies = inner.Wait(3);
  ASSERT_EQ(bodies.size(), 3u);
  EXPECT_EQ(bodies[2].find("DKIM-Signature"), std::string::npos) << "signing turned off";
}

// A store that blocks its caller until released: the worker is busy while more queue up.
class BlockingStore final : public MessageStore {
 public:
  void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) override {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
    done(queue::MessageId{1}, std::move(message));
  }
  void WaitEntered(int n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 10s, [&] { return entered_ >= n; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int entered() {
    std::lock_guard lock(mu_);
    return entered_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool released_ = false;
};

TEST(SigningStoreTest, StopFinishesTheMessageInHandAndDropsTheQueuedUnanswered) {
  BlockingStore inner;
  std::atomic<int> answered{0};
  {
    SigningStore store(inner, 1);
    store.SetSigner(SignerFor("shop.test", "s1"));
    for (int i = 0; i < 3; ++i) {
      store.Accept(MessageFrom("shop.test"),
                   [&](Result<queue::MessageId>, queue::NewMessage&&) { ++answered; });
    }
    inner.WaitEntered(1);
    EXPECT_EQ(store.queued(), 2u);
    std::thread stopper([&] { store.Stop(); });
    // Stop() drops the queue at once, then waits for the worker inside the store.
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         store.queued() > 0 && std::chrono::steady_clock::now() < deadline;)
      std::this_thread::yield();
    inner.Release();
    stopper.join();
  }
  EXPECT_EQ(inner.entered(), 1) << "the two queued never reached the spool";
  EXPECT_EQ(answered.load(), 1) << "and were never answered (their clients send again)";
}

}  // namespace
}  // namespace spate::server
