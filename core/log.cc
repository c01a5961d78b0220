#include "core/log.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include <time.h>
#include <unistd.h>

namespace spate::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
// How long queued lines may wait for the writer when the queue is not filling up.
constexpr auto kWriterPeriod = std::chrono::milliseconds(20);

void WriteAll(const char* data, size_t size) {
  while (size > 0) {
    ssize_t w = ::write(STDERR_FILENO, data, size);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;  // a failed write to stderr has nowhere to be reported: dropped on purpose
    data += w;
    size -= static_cast<size_t>(w);
  }
}

// The queue: one buffer of whole lines, swapped out by the writer. Producers notify only when
// it passes half its bound; otherwise the writer comes by every kWriterPeriod, so logging
// costs a reactor no system call.
class Writer {
 public:
  bool running() const { return running_.load(std::memory_order_acquire); }

  void Start(size_t max_bytes) {
    std::lock_guard lock(mu_);
    if (running())
      return;
    max_bytes_ = max_bytes;
    stopping_ = false;
    thread_ = std::thread([this] { Run(); });
    running_.store(true, std::memory_order_release);
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      if (!running())
        return;
      stopping_ = true;
      running_.store(false, std::memory_order_release);
    }
    cv_.notify_one();
    thread_.join();
  }

  // False when the writer is not running (the caller writes the line itself).
  bool Push(const char* line, size_t size) {
    bool wake = false;
    {
      std::lock_guard lock(mu_);
      if (!running())
        return false;
      if (queued_.size() + size > max_bytes_) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        ++dropped_unreported_;
        return true;
      }
      const bool below_half = queued_.size() < max_bytes_ / 2;
      queued_.append(line, size);
      wake = below_half && queued_.size() >= max_bytes_ / 2;
    }
    if (wake)
      cv_.notify_one();
    return true;
  }

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  void Flush() {
    std::string out;
    {
      std::lock_guard lock(mu_);
      out.swap(queued_);
    }
    WriteAll(out.data(), out.size());
  }

 private:
  void Run() {
    std::string out;
    for (;;) {
      uint64_t dropped = 0;
      bool stop;
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, kWriterPeriod,
                     [&] { return stopping_ || queued_.size() >= max_bytes_ / 2; });
        out.swap(queued_);
        dropped = std::exchange(dropped_unreported_, 0);
        stop = stopping_;
      }
      WriteAll(out.data(), out.size());
      out.clear();
      if (out.capacity() > (1 << 20))
        std::string().swap(out);  // a burst leaves no large buffer behind
      if (dropped != 0) {
        char line[128];
        int n =
            std::snprintf(line, sizeof line, "log: %llu lines dropped: the log could not keep up\n",
                          static_cast<unsigned long long>(dropped));
        WriteAll(line, static_cast<size_t>(n));
      }
      if (stop)
        return;
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string queued_;
  size_t max_bytes_ = 0;
  bool stopping_ = false;
  uint64_t dropped_unreported_ = 0;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<bool> running_{false};
  std::thread thread_;
};

Writer& TheWriter() {
  static Writer* w = new Writer();  // never destroyed: lines may come during static teardown
  return *w;
}

}  // namespace

void SetLevel(Level level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool Enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void Write(Level level, const char* fmt, ...) {
  char buf[2048];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                        t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                        ts.tv_nsec / 1000000, kNames[static_cast<int>(level)]);
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
  va_end(ap);
  size_t len = n + (m < 0 ? 0 : std::min<size_t>(m, sizeof buf - n - 2));
  buf[len++] = '\n';
  if (!TheWriter().Push(buf, len))
    WriteAll(buf, len);
}

void StartWriter(size_t max_queued_bytes) {
  TheWriter().Start(max_queued_bytes);
}

void StopWriter() {
  TheWriter().Stop();
}

uint64_t Dropped() {
  return TheWriter().dropped();
}

void FlushNow() {
  TheWriter().Flush();
}

const char* ErrorText(int errnum) {
  const char* text = strerrordesc_np(errnum);
  return text != nullptr ? text : "unknown error";
}

}  // namespace spate::log
