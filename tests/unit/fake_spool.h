// tests/unit/fake_spool.h
//
// FakeSpool is the delivery engine's SpoolPort (delivery/spool_port.h) in memory, for component
// tests: it records every Finish and Defer in call order, and answers ReadBody from a map of
// bodies, at once or held until the test releases it; an id can be set to fail its next read.
// Threading: the engine's shard, which in these tests is the test thread; `done` runs on the
// thread that answers (here the same one; the engine posts the result to its shard anyway).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "delivery/spool_port.h"
#include "queue/spool.h"

namespace spate::delivery {

class FakeSpool final : public SpoolPort {
 public:
  struct Finished {
    queue::MessageId id = 0;
    uint32_t index = 0;
  };
  struct Deferred {
    queue::MessageId id = 0;
    uint32_t index = 0;
    uint16_t attempts = 0;
    int64_t next_attempt_ms = 0;
    bool delay_warned = false;
  };

  // SpoolPort
  void Finish(queue::MessageId id, uint32_t index) override { finished_.push_back({id, index}); }
  void Defer(queue::MessageId id, uint32_t index, uint16_t attempts, int64_t next_attempt_ms,
             bool delay_warned) override {
    deferred_.push_back({id, index, attempts, next_attempt_ms, delay_warned});
  }
  void Suppress(queue::SuppressionEntry&& entry) override {
    suppressed_.push_back(std::move(entry));
  }
  void ReadBody(queue::MessageId id, BodyDone done) override {
    reads_.push_back(id);
    if (hold_reads_) {
      held_.push_back({id, std::move(done)});
      max_held_ = std::max(max_held_, held_.size());
      return;
    }
    Answer(id, std::move(done));
  }

  void Inject(queue::NewMessage&& message, InjectDone done) override {
    injected_.push_back(std::move(message));
    done(!fail_injects_, fail_injects_ ? 0 : 1000 + injected_.size());
  }
  const std::vector<queue::NewMessage>& injected() const { return injected_; }
  void FailInjects(bool fail) { fail_injects_ = fail; }

  // The script.
  void SetBody(queue::MessageId id, std::string body) { bodies_[id] = std::move(body); }
  // As the spool does when a message's last recipient is finished.
  void DropBody(queue::MessageId id) { bodies_.erase(id); }
  void FailNextRead(queue::MessageId id) { failing_.insert(id); }
  // While held, reads wait until ReleaseOne(); reads already held stay held after HoldReads(false).
  void HoldReads(bool hold) { hold_reads_ = hold; }
  // Answers the oldest held read; false when none is held.
  bool ReleaseOne() {
    if (held_.empty())
      return false;
    auto [id, done] = std::move(held_.front());
    held_.pop_front();
    Answer(id, std::move(done));
    return true;
  }

  // What the engine did.
  const std::vector<Finished>& finished() const { return finished_; }
  const std::vector<Deferred>& deferred() const { return deferred_; }
  const std::vector<queue::SuppressionEntry>& suppressed() const { return suppressed_; }
  const std::vector<queue::MessageId>& reads() const { return reads_; }
  size_t held() const { return held_.size(); }
  size_t max_held() const { return max_held_; }  // most reads held at once
  size_t finishes(queue::MessageId id, uint32_t index) const {
    return static_cast<size_t>(std::count_if(finished_.begin(), finished_.end(), [&](auto& f) {
      return f.id == id && f.index == index;
    }));
  }
  size_t reads_of(queue::MessageId id) const {
    return static_cast<size_t>(std::count(reads_.begin(), reads_.end(), id));
  }

 private:
  std::vector<queue::NewMessage> injected_;
  bool fail_injects_ = false;
  void Answer(queue::MessageId id, BodyDone done) {
    if (failing_.erase(id) > 0) {
      done(Errno(EIO));
      return;
    }
    auto it = bodies_.find(id);
    if (it == bodies_.end()) {
      done(Errno(ENOENT));
      return;
    }
    done(std::string(it->second));
  }

  std::map<queue::MessageId, std::string> bodies_;
  std::set<queue::MessageId> failing_;
  bool hold_reads_ = false;
  std::deque<std::pair<queue::MessageId, BodyDone>> held_;
  size_t max_held_ = 0;
  std::vector<Finished> finished_;
  std::vector<Deferred> deferred_;
  std::vector<queue::SuppressionEntry> suppressed_;
  std::vector<queue::MessageId> reads_;
};

}  // namespace spate::delivery
