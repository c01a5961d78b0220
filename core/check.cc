#include "core/check.h"

#include <cstdio>
#include <cstdlib>

#include "core/log.h"

namespace spate::internal {

void CheckFailed(const char* file, int line, const char* expr) noexcept {
  log::FlushNow();  // the lines that led here first
  std::fprintf(stderr, "%s:%d: SPATE_CHECK failed: %s\n", file, line, expr);
  std::abort();
}

}  // namespace spate::internal
