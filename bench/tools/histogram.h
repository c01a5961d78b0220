// bench/tools/histogram.h
//
// Histogram is a log-linear latency histogram (HdrHistogram's layout with 64 sub-buckets per
// power of two, so any recorded value is known to within 1/64, about 1.6%) over nanoseconds,
// from 0 to 2^63. Fixed size (about 30 KB), no allocation after construction.
//
// Threading: one writer (Record), any number of readers (Snapshot): every bucket is a relaxed
// atomic that only its writer updates with a plain load + store (no locked instruction), so a
// reader on another thread sees each bucket whole, possibly a few records behind.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace spate::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  // Writer thread only.
  void Record(uint64_t ns) {
    auto& b = buckets_[Index(ns)];
    b.store(b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // A plain copy of the counts (any thread).
  struct Counts {
    std::vector<uint64_t> buckets = std::vector<uint64_t>(kBuckets, 0);
    void Add(const Counts& other);
    void Subtract(const Counts& other);  // other must be an earlier snapshot of the same
    uint64_t Total() const;
    // The value at quantile q in [0, 1] (upper end of its bucket), or 0 when empty.
    uint64_t Quantile(double q) const;
    uint64_t Max() const;
    double Mean() const;
    // {"count":..,"mean":..,"p50":..,"p90":..,"p99":..,"p99.9":..,"max":..} in milliseconds.
    std::string SummaryJson() const;
    // [[ms, cumulative fraction], ...] at every non-empty bucket (for a CDF plot).
    std::string CdfJson() const;
  };
  void Snapshot(Counts* into) const;

  static int Index(uint64_t v);
  static uint64_t UpperBound(int index);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

}  // namespace spate::bench
