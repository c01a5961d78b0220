// core/check.h
//
// SPATE_CHECK(cond): aborts with file, line and the condition when an invariant is broken.
// Always on, in every build. Never use it on remote input: bad input gets a reply, not a crash.
#pragma once

namespace spate::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr) noexcept;
}  // namespace spate::internal

#define SPATE_CHECK(cond)                                        \
  do {                                                           \
    if (!(cond)) [[unlikely]] {                                  \
      ::spate::internal::CheckFailed(__FILE__, __LINE__, #cond); \
    }                                                            \
  } while (false)
