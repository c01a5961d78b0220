#include "core/check.h"

#include <cstdio>
#include <cstdlib>

namespace spate::internal {

void CheckFailed(const char* file, int line, const char* expr) noexcept {
  std::fprintf(stderr, "%s:%d: SPATE_CHECK failed: %s\n", file, line, expr);
  std::abort();
}

}  // namespace spate::internal
