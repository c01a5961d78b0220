// core/log.h
//
// Leveled logging to stderr, one line per call, printf-style (checked by -Wformat=2).
//
// Once StartWriter() has run, a line is formatted on the caller's thread and queued; a writer
// thread of its own writes what is queued, in batches, so no reactor waits on stderr (a pipe, a
// terminal, the journal) and none makes a system call to log. The queue is bounded by bytes:
// when it is full a line is dropped and counted (Dropped()), never waited for; the writer says
// how many were dropped. Before StartWriter() and after StopWriter() a line is written at once
// with one write(2), so lines from different threads never interleave.
// Threading: any thread. Blocking: Write() never waits for the writer (a short lock to queue).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace spate::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLevel(Level level);
bool Enabled(Level level);
void Write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// The writer thread, with at most `max_queued_bytes` of lines waiting. Idempotent.
void StartWriter(size_t max_queued_bytes = 4 << 20);
// Writes what is queued and stops the writer; later lines are written directly. Idempotent.
void StopWriter();
// Lines dropped since the start because the queue was full.
uint64_t Dropped();
// Writes what is queued now, from the calling thread (before an abort: SPATE_CHECK).
void FlushNow();

// strerror() without its shared buffer: safe on any thread.
const char* ErrorText(int errnum);

}  // namespace spate::log

#define SPATE_LOG(level, ...)                                       \
  do {                                                              \
    if (::spate::log::Enabled(::spate::log::Level::level)) {        \
      ::spate::log::Write(::spate::log::Level::level, __VA_ARGS__); \
    }                                                               \
  } while (false)
