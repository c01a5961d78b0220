// core/counter.h
//
// Hot counters with one writer: an increment is a relaxed load and store (no locked instruction),
// and readers on other threads (the metrics exporter at scrape time) see a recent value. Each
// shard keeps its own, so no cache line is written by two shards.
// Threading: one writing thread; readers on any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace spate {

class Counter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A gauge set by its single writer.
class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n) { Set(Get() + n); }
  int64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

}  // namespace spate
