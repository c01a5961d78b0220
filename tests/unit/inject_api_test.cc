// tests/unit/inject_api_test.cc
//
// The injection API's refusals that depend on what is in flight (core/daemon/inject_api.h): 409
// for an Idempotency-Key whose first request is still being answered, 429 past max_pending
// messages being built or committed, and what a client then gets when it tries again. A real
// spool (the keys are kept in its state); the store holds each message's commit until the test
// lets it go, and the "worker" is a thread the test starts.
#include "core/daemon/inject_api.h"

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <stdlib.h>

#include <gtest/gtest.h>

#include "core/reactor.h"
#include "queue/spool.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {
namespace {

using Json = nlohmann::json;

// Holds every Accept until Release(); then commits it in the real spool.
class HeldStore final : public server::MessageStore {
 public:
  explicit HeldStore(queue::Spool& spool) : spool_(spool) {}
  void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) override {
    std::lock_guard lock(mu_);
    held_.emplace_back(std::move(message), std::move(done));
    cv_.notify_all();
  }
  // Waits until `n` are held.
  bool WaitHeld(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return held_.size() >= n; });
  }
  void ReleaseAll() {
    std::vector<std::pair<queue::NewMessage, queue::Spool::AcceptDone>> all;
    {
      std::lock_guard lock(mu_);
      all.swap(held_);
    }
    for (auto& [m, done] : all)
      spool_.Accept(std::move(m), std::move(done));
  }

 private:
  queue::Spool& spool_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<queue::NewMessage, queue::Spool::AcceptDone>> held_;
};

class InjectApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/spate-inject-api-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    auto r = Reactor::Create(64);
    ASSERT_TRUE(r.has_value());
    reactor_ = std::move(r).value();
    queue::Spool::Options so;
    so.path = dir_ + "/spool";
    so.sync = false;
    std::string error;
    auto spool = queue::Spool::Open(so, &error);
    ASSERT_TRUE(spool.has_value()) << error;
    spool_ = std::move(spool).value();
    ASSERT_TRUE(spool_->Recover([](queue::RecoveredMessage&&) {}).has_value());
    spool_->Start();
    store_ = std::make_unique<HeldStore>(*spool_);
  }
  void TearDown() override {
    for (std::thread& t : workers_)
      t.join();
    api_.reset();
    store_.reset();
    spool_.reset();
    reactor_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Make(size_t max_pending, size_t max_requests = 8) {
    InjectApi::Options o;
    o.hostname = "mta.test";
    o.postmaster = "postmaster@mta.test";
    o.max_pending = max_pending;
    o.max_requests = max_requests;
    api_ = std::make_unique<InjectApi>(
        *reactor_, o, *store_, *spool_, [](queue::MessageId, queue::NewMessage&&) {},
        [this](std::function<http::Response()> work, AdminServer::Respond respond) {
          std::lock_guard lock(mu_);
          offloaded_.emplace_back(std::move(work), std::move(respond));
        });
  }

  // Posts a request for `recipients` messages; the answer, if it came at once (not offloaded).
  std::optional<http::Response> Post(size_t recipients, const std::string& key = "") {
    Json body = {{"envelope_sender", "s@src.test"},
                 {"content", "Subject: hi\r\n\r\nhello\r\n"},
                 {"recipients", Json::array()}};
    for (size_t i = 0; i < recipients; ++i)
      body["recipients"].push_back({{"email", "r" + std::to_string(i) + "@dest.test"}});
    http::Request r;
    r.method = "POST";
    r.target = r.path = "/api/inject/v1";
    r.body = body.dump();
    if (!key.empty())
      r.headers.emplace_back("idempotency-key", key);
    std::optional<http::Response> now;
    api_->Handle(r, [&now](http::Response resp) { now = std::move(resp); });
    return now;
  }

  // Runs the oldest offloaded work on a worker thread of its own; its answer lands in *out.
  void RunOffloaded(std::shared_ptr<std::optional<http::Response>> out) {
    std::pair<std::function<http::Response()>, AdminServer::Respond> job;
    {
      std::lock_guard lock(mu_);
      ASSERT_FALSE(offloaded_.empty());
      job = std::move(offloaded_.front());
      offloaded_.erase(offloaded_.begin());
    }
    workers_.emplace_back([job = std::move(job), out, this]() mutable {
      http::Response resp = job.first();
      std::lock_guard lock(mu_);
      *out = std::move(resp);
      cv_.notify_all();
    });
  }
  // The oldest offloaded request, run to its answer: its `messages` held, then committed.
  std::optional<http::Response> AnswerOffloaded(size_t messages) {
    auto out = std::make_shared<std::optional<http::Response>>();
    RunOffloaded(out);
    if (!store_->WaitHeld(messages)) {
      ADD_FAILURE() << messages << " messages never reached the store";
      return std::nullopt;
    }
    store_->ReleaseAll();
    if (!WaitAnswer(out))
      ADD_FAILURE() << "no answer";
    return *out;
  }
  bool WaitAnswer(const std::shared_ptr<std::optional<http::Response>>& out) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return out->has_value(); });
  }

  static std::string HeaderOf(const http::Response& r, const std::string& name) {
    for (const auto& [n, v] : r.headers) {
      if (n == name)
        return v;
    }
    return "";
  }

  std::string dir_;
  std::unique_ptr<Reactor> reactor_;
  std::unique_ptr<queue::Spool> spool_;
  std::unique_ptr<HeldStore> store_;
  std::unique_ptr<InjectApi> api_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::function<http::Response()>, AdminServer::Respond>> offloaded_;
  std::vector<std::thread> workers_;
};

TEST_F(InjectApiTest, AKeyStillBeingAnsweredGets409ThenTheFirstAnswerIsReplayed) {
  Make(100);
  EXPECT_FALSE(Post(2, "order-1").has_value());  // offloaded: being answered
  std::optional<http::Response> again = Post(2, "order-1");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, 409);
  EXPECT_EQ(Json::parse(again->body)["field"], "Idempotency-Key");
  EXPECT_FALSE(Post(1, "order-2").has_value()) << "another key is not held up";

  const std::optional<http::Response> first = AnswerOffloaded(2);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(Json::parse(first->body)["success_count"], 2);

  std::optional<http::Response> replay = Post(2, "order-1");
  ASSERT_TRUE(replay.has_value());
  EXPECT_EQ(replay->status, 200);
  EXPECT_EQ(replay->body, first->body);
  EXPECT_EQ(HeaderOf(*replay, "Idempotent-Replayed"), "true");
  EXPECT_EQ(spool_->stats().accepted, 2u) << "the replay queued nothing";
}

// A key is held to its request: the same key with another body gets 422, not the first
// request's answer (draft-ietf-httpapi-idempotency-key-header); with the same body, the replay.
TEST_F(InjectApiTest, AKeyUsedWithAnotherRequestGets422) {
  Make(100);
  EXPECT_FALSE(Post(1, "order-7").has_value());
  const std::optional<http::Response> first = AnswerOffloaded(1);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->status, 200);
  std::optional<http::Response> other = Post(2, "order-7");
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->status, 422);
  EXPECT_EQ(Json::parse(other->body)["field"], "Idempotency-Key");
  std::optional<http::Response> same = Post(1, "order-7");
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->status, 200);
  EXPECT_EQ(HeaderOf(*same, "Idempotent-Replayed"), "true");
  EXPECT_EQ(spool_->stats().accepted, 1u);
}

// A request refused for its input did nothing: its key is free for the request put right,
// which is queued (kept, the 400 would be replayed to it for a day).
TEST_F(InjectApiTest, AKeyRefusedForItsInputIsFreeForTheCorrectedRequest) {
  Make(100);
  http::Request bad;
  bad.method = "POST";
  bad.target = bad.path = "/api/inject/v1";
  bad.body = R"({"envelope_sender": "s@src.test", "recipients": []})";
  bad.headers.emplace_back("idempotency-key", "order-8");
  std::optional<http::Response> now;
  api_->Handle(bad, [&now](http::Response resp) { now = std::move(resp); });
  auto refused = std::make_shared<std::optional<http::Response>>();
  if (!now) {
    RunOffloaded(refused);
    ASSERT_TRUE(WaitAnswer(refused));
  } else {
    *refused = std::move(now);
  }
  ASSERT_EQ((*refused)->status, 400) << (*refused)->body;
  EXPECT_FALSE(Post(1, "order-8").has_value()) << "not a replay: built and queued";
  const std::optional<http::Response> fixed = AnswerOffloaded(1);
  ASSERT_TRUE(fixed.has_value());
  EXPECT_EQ(fixed->status, 200);
  EXPECT_EQ(spool_->stats().accepted, 1u);
}

// The worker answers one request at a time, each holding its body meanwhile: past
// max_requests waiting or being answered, a request gets 429 at once, and its key stays free.
TEST_F(InjectApiTest, PastMaxRequestsWaitingARequestGets429) {
  Make(100, 2);
  EXPECT_FALSE(Post(1).has_value());
  EXPECT_FALSE(Post(1).has_value());
  std::optional<http::Response> busy = Post(1, "later");
  ASSERT_TRUE(busy.has_value());
  EXPECT_EQ(busy->status, 429);
  EXPECT_EQ(HeaderOf(*busy, "Retry-After"), "1");
  const std::optional<http::Response> first = AnswerOffloaded(1);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 200);
  EXPECT_FALSE(Post(1, "later").has_value()) << "one answered: room again, the key free";
}

TEST_F(InjectApiTest, PastMaxPendingARequestGets429AndItsKeyIsFreeForTheRetry) {
  Make(3);
  EXPECT_FALSE(Post(3).has_value());
  auto first = std::make_shared<std::optional<http::Response>>();
  RunOffloaded(first);
  ASSERT_TRUE(store_->WaitHeld(3));  // three messages being committed: the limit

  std::optional<http::Response> busy = Post(1, "retry-me");
  ASSERT_TRUE(busy.has_value());
  EXPECT_EQ(busy->status, 429);
  EXPECT_EQ(HeaderOf(*busy, "Retry-After"), "1");
  EXPECT_NE(Json::parse(busy->body)["error"].get<std::string>().find("try again"),
            std::string::npos);

  store_->ReleaseAll();
  ASSERT_TRUE(WaitAnswer(first));
  EXPECT_EQ((*first)->status, 200);
  // The retry with the same key is taken (not a 409, not a replay of the 429).
  EXPECT_FALSE(Post(1, "retry-me").has_value());
  const std::optional<http::Response> retried = AnswerOffloaded(1);
  ASSERT_TRUE(retried.has_value());
  EXPECT_EQ(retried->status, 200);
  EXPECT_EQ(spool_->stats().accepted, 4u);
}

}  // namespace
}  // namespace spate::daemon
