#include "delivery/scheduler.h"

#include <chrono>

namespace spate::delivery {

Scheduler::Scheduler(Reactor& reactor, Due on_due)
    : reactor_(reactor), on_due_(std::move(on_due)) {}

Scheduler::~Scheduler() {
  reactor_.CancelTimer(timer_);
}

void Scheduler::Add(Job&& job) {
  int64_t bucket = job.due_ms / kGranularityMs;
  buckets_[bucket].push_back(std::move(job));
  ++size_;
  if (armed_bucket_ < 0 || bucket < armed_bucket_)
    Arm();
}

size_t Scheduler::Flush(const std::function<bool(const Job&)>& due) {
  // Bucket 0 ends at 100 ms after the epoch: always past, so its jobs go at the next Release().
  std::vector<Job> now = Take([&due](const Job& job) { return job.due_ms != 0 && due(job); });
  const size_t n = now.size();
  if (n > 0) {
    std::deque<Job>& first = buckets_[0];
    for (Job& job : now) {
      job.due_ms = 0;
      first.push_back(std::move(job));
    }
    size_ += n;
    Arm();
  }
  return n;
}

std::vector<Job> Scheduler::Take(const std::function<bool(const Job&)>& take) {
  std::vector<Job> out;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    std::deque<Job> keep;
    for (Job& job : it->second) {
      if (take(job)) {
        out.push_back(std::move(job));
      } else {
        keep.push_back(std::move(job));
      }
    }
    if (keep.empty()) {
      it = buckets_.erase(it);
    } else {
      it->second.swap(keep);
      ++it;
    }
  }
  size_ -= out.size();
  if (!out.empty())
    Arm();
  return out;
}

void Scheduler::Clear() {
  buckets_.clear();
  size_ = 0;
  reactor_.CancelTimer(timer_);
  armed_bucket_ = -1;
}

void Scheduler::Arm() {
  reactor_.CancelTimer(timer_);
  armed_bucket_ = -1;
  if (buckets_.empty())
    return;
  armed_bucket_ = buckets_.begin()->first;
  // The bucket's end, on the reactor's steady clock.
  int64_t wait_ms = (armed_bucket_ + 1) * kGranularityMs - reactor_.wall_ms();
  auto at = reactor_.now() + std::chrono::milliseconds(std::max<int64_t>(wait_ms, 0));
  timer_ = reactor_.AddTimer(at, [this] {
    timer_ = {};
    armed_bucket_ = -1;
    Release();
  });
}

void Scheduler::Release() {
  const int64_t now_ms = reactor_.wall_ms();
  size_t released = 0;
  while (!buckets_.empty() && released < kBatch) {
    auto it = buckets_.begin();
    if ((it->first + 1) * kGranularityMs > now_ms)
      break;
    std::deque<Job>& jobs = it->second;
    while (!jobs.empty() && released < kBatch) {
      Job job = std::move(jobs.front());
      jobs.pop_front();
      --size_;
      ++released;
      job.due_ms = 0;
      on_due_(std::move(job));  // may Add() again (a job rescheduled at once): fine
    }
    if (it->second.empty())
      buckets_.erase(buckets_.find(it->first));
  }
  if (buckets_.empty())
    return;
  if (released == kBatch && (buckets_.begin()->first + 1) * kGranularityMs <= now_ms) {
    // More are due: the next batch at the next loop turn, after the I/O that waits.
    reactor_.CancelTimer(timer_);
    armed_bucket_ = buckets_.begin()->first;
    timer_ = reactor_.AddTimer(reactor_.now(), [this] {
      timer_ = {};
      armed_bucket_ = -1;
      Release();
    });
    return;
  }
  Arm();
}

}  // namespace spate::delivery
