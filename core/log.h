// core/log.h
//
// Minimal leveled logging to stderr: one line per call, written with a single write(2) so lines
// from different threads never interleave. printf-style (checked by -Wformat=2).
// Threading: any thread. Blocking: a write to stderr (a pipe or the journal in practice).
#pragma once

#include <atomic>

namespace spate::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLevel(Level level);
bool Enabled(Level level);
void Write(Level level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace spate::log

#define SPATE_LOG(level, ...)                                       \
  do {                                                              \
    if (::spate::log::Enabled(::spate::log::Level::level)) {        \
      ::spate::log::Write(::spate::log::Level::level, __VA_ARGS__); \
    }                                                               \
  } while (false)
