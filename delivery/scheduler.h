// delivery/scheduler.h
//
// Scheduler keeps one shard's jobs that are not due yet (deferred, or recovered with a retry
// time) and hands each to `on_due` once its time has come. Jobs sit in buckets of kGranularity
// of wall-clock time, each bucket a deque (no per-job allocation, no per-job timer); one reactor
// timer is armed for the earliest bucket. A bucket is released when its end has passed, so a job
// is never early and at most kGranularity late. Releasing is bounded per loop turn (kBatch), so
// a million jobs falling due together do not stall the shard's I/O.
// Threading: lives on its shard; `on_due` runs there, from a timer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include "core/reactor.h"
#include "core/task.h"
#include "delivery/job.h"

namespace spate::delivery {

class Scheduler {
 public:
  static constexpr int64_t kGranularityMs = 100;
  static constexpr size_t kBatch = 4096;
  using Due = UniqueFunction<void(Job&&)>;

  Scheduler(Reactor& reactor, Due on_due);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Holds `job` until job.due_ms (unix ms, the reactor's wall clock).
  void Add(Job&& job);
  size_t size() const { return size_; }
  // Makes every job `due` says yes to due now (an operator's flush): released from the next
  // loop turn on, kBatch a turn like any other. How many.
  size_t Flush(const std::function<bool(const Job&)>& due);
  // Takes out every job `take` says yes to (an operator's bounce), in due order.
  std::vector<Job> Take(const std::function<bool(const Job&)>& take);
  // Drops every job (shutdown: they stay in the spool).
  void Clear();

 private:
  void Arm();
  void Release();

  Reactor& reactor_;
  Due on_due_;
  std::map<int64_t, std::deque<Job>> buckets_;  // bucket number (due_ms / granularity) -> jobs
  size_t size_ = 0;
  Reactor::TimerId timer_;
  int64_t armed_bucket_ = -1;
};

}  // namespace spate::delivery
