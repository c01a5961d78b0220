// core/counter.h
//
// Hot counters with one writer: an increment is a relaxed load and store (no locked instruction),
// and readers on other threads (the metrics exporter at scrape time) see a recent value. Each
// shard keeps its own, so no cache line is written by two shards.
// Threading: one writing thread; readers on any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

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

// A histogram with one writer: a Counter per bucket (upper bounds ascending, and +Inf), the
// count and the sum (in microseconds of the unit, so a Counter holds it). Readers see each
// bucket's own count (not cumulative: the exporter adds them up for Prometheus).
class Histogram {
 public:
  static constexpr size_t kMaxBounds = 15;
  // `bounds` must outlive the histogram (a static array); at most kMaxBounds.
  explicit Histogram(std::span<const double> bounds)
      : bounds_(bounds.first(bounds.size() < kMaxBounds ? bounds.size() : kMaxBounds)) {}

  void Observe(double v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i])
      ++i;
    counts_[i].Add();
    count_.Add();
    sum_micros_.Add(v > 0 ? static_cast<uint64_t>(v * 1e6) : 0);
  }

  std::span<const double> bounds() const { return bounds_; }
  // Bucket i's own count; i == bounds().size() is the +Inf bucket.
  uint64_t bucket(size_t i) const { return counts_[i].Get(); }
  uint64_t count() const { return count_.Get(); }
  double sum() const { return static_cast<double>(sum_micros_.Get()) / 1e6; }

 private:
  std::span<const double> bounds_;
  std::array<Counter, kMaxBounds + 1> counts_;
  Counter count_;
  Counter sum_micros_;
};

}  // namespace spate
