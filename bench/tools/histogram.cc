#include "bench/tools/histogram.h"

#include <bit>
#include <cstdio>

namespace spate::bench {

int Histogram::Index(uint64_t v) {
  if (v < static_cast<uint64_t>(kSub))
    return static_cast<int>(v);
  int e = 63 - std::countl_zero(v);  // >= kSubBits
  return (e - kSubBits + 1) * kSub + static_cast<int>((v >> (e - kSubBits)) - kSub);
}

uint64_t Histogram::UpperBound(int index) {
  if (index < kSub)
    return static_cast<uint64_t>(index);
  int e = index / kSub + kSubBits - 1;
  uint64_t sub = static_cast<uint64_t>(index % kSub);
  uint64_t width = uint64_t{1} << (e - kSubBits);
  return ((kSub + sub) << (e - kSubBits)) + width - 1;
}

void Histogram::Snapshot(Counts* into) const {
  for (int i = 0; i < kBuckets; ++i)
    into->buckets[i] = buckets_[i].load(std::memory_order_relaxed);
}

void Histogram::Counts::Add(const Counts& other) {
  for (int i = 0; i < kBuckets; ++i)
    buckets[i] += other.buckets[i];
}

void Histogram::Counts::Subtract(const Counts& other) {
  for (int i = 0; i < kBuckets; ++i)
    buckets[i] -= other.buckets[i];
}

uint64_t Histogram::Counts::Total() const {
  uint64_t n = 0;
  for (uint64_t b : buckets)
    n += b;
  return n;
}

uint64_t Histogram::Counts::Quantile(double q) const {
  uint64_t total = Total();
  if (total == 0)
    return 0;
  // The smallest value with at least ceil(q * total) values at or below it.
  uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total) + 0.999999);
  if (rank == 0)
    rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets[i];
    if (seen >= rank)
      return UpperBound(i);
  }
  return Max();
}

uint64_t Histogram::Counts::Max() const {
  for (int i = kBuckets - 1; i >= 0; --i) {
    if (buckets[i] != 0)
      return UpperBound(i);
  }
  return 0;
}

double Histogram::Counts::Mean() const {
  double sum = 0;
  uint64_t n = 0;
  for (int i = 0; i < kBuckets; ++i) {
    if (buckets[i] == 0)
      continue;
    // The middle of the bucket.
    uint64_t lo = i == 0 ? 0 : UpperBound(i - 1) + 1;
    sum += static_cast<double>(buckets[i]) * (static_cast<double>(lo + UpperBound(i)) / 2);
    n += buckets[i];
  }
  return n == 0 ? 0 : sum / static_cast<double>(n);
}

namespace {
double Ms(uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}
}  // namespace

std::string Histogram::Counts::SummaryJson() const {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "{\"count\": %llu, \"mean\": %.4f, \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, "
                "\"p99.9\": %.4f, \"max\": %.4f}",
                static_cast<unsigned long long>(Total()), Mean() / 1e6, Ms(Quantile(0.5)),
                Ms(Quantile(0.9)), Ms(Quantile(0.99)), Ms(Quantile(0.999)), Ms(Max()));
  return buf;
}

std::string Histogram::Counts::CdfJson() const {
  uint64_t total = Total();
  std::string out = "[";
  if (total == 0)
    return out + "]";
  uint64_t seen = 0;
  char buf[64];
  for (int i = 0; i < kBuckets; ++i) {
    if (buckets[i] == 0)
      continue;
    seen += buckets[i];
    std::snprintf(buf, sizeof buf, "%s[%.4f, %.6f]", out.size() > 1 ? ", " : "", Ms(UpperBound(i)),
                  static_cast<double>(seen) / static_cast<double>(total));
    out += buf;
  }
  return out + "]";
}

}  // namespace spate::bench
