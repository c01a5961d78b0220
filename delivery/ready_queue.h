// delivery/ready_queue.h
//
// A site's queue of due jobs in priority order (RFC 6710 MT-PRIORITY, -9..9, Message::priority):
// pop() takes the oldest job of the highest priority waiting, so a high-priority message takes
// the next free connection before queued bulk, except that every kFairEvery-th pop takes the
// oldest job of the lowest priority waiting, so low priority still moves (at least one in
// kFairEvery while higher priorities keep coming: no starvation). Within a priority, first in,
// first out.
//
// Most mail has priority 0: it lives in one deque, and another priority costs a deque of its
// own only while jobs of it wait (an empty site holds no more than before priorities).
// Threading: one owner (its site).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>

#include "delivery/job.h"

namespace spate::delivery {

class ReadyQueue {
 public:
  static constexpr unsigned kFairEvery = 8;

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }

  void push_back(Job&& job) {
    const int8_t p = PriorityOf(job);
    (p == 0 ? normal_ : others_[p]).push_back(std::move(job));
    ++size_;
  }
  // Precondition: !empty().
  Job pop() {
    std::deque<Job>* from = Pick(++pops_);
    Job job = std::move(from->front());
    from->pop_front();
    --size_;
    if (from != &normal_ && from->empty())
      others_.erase(PriorityOf(job));
    return job;
  }
  // Precondition: !empty(). The job pop() takes next.
  const Job& front() const { return const_cast<ReadyQueue*>(this)->Pick(pops_ + 1)->front(); }
  // Every job, in no particular order; the queue is left empty.
  template <typename F>
  void Drain(F&& f) {
    while (!normal_.empty()) {
      Job job = std::move(normal_.front());
      normal_.pop_front();
      --size_;
      f(std::move(job));
    }
    std::map<int8_t, std::deque<Job>> others;
    others.swap(others_);
    for (auto& [p, q] : others) {
      for (Job& job : q) {
        --size_;
        f(std::move(job));
      }
    }
  }
  void clear() {
    normal_.clear();
    others_.clear();
    size_ = 0;
  }

  static int8_t PriorityOf(const Job& job) {
    return job.message != nullptr ? job.message->priority : int8_t{0};
  }

 private:
  // The deque pop number `n` takes from.
  std::deque<Job>* Pick(uint64_t n) {
    if (others_.empty())
      return &normal_;
    const bool fair = n % kFairEvery == 0;
    // others_ is ordered by priority: lowest first.
    auto lowest = others_.begin();
    auto highest = std::prev(others_.end());
    if (fair) {
      if (!normal_.empty() && lowest->first > 0)
        return &normal_;
      return &lowest->second;
    }
    if (highest->first > 0 || normal_.empty())
      return &highest->second;
    return &normal_;
  }

  std::deque<Job> normal_;                    // priority 0
  std::map<int8_t, std::deque<Job>> others_;  // never holds an empty deque
  size_t size_ = 0;
  uint64_t pops_ = 0;
};

}  // namespace spate::delivery
