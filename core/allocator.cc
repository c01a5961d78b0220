#include "core/allocator.h"

#include <malloc.h>

// jemalloc's control interface, when jemalloc is the allocator (the daemon links it unless
// built with a sanitizer; CMakeLists.txt SPATE_JEMALLOC): weak, so the same code runs on
// glibc's malloc, where it is null.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace spate {

namespace {

bool HaveJemalloc() {
  return mallctl != nullptr;
}

}  // namespace

const char* AllocatorName() {
  if (!HaveJemalloc())
    return "glibc";
  static const char* version = [] {
    const char* v = nullptr;
    size_t len = sizeof v;
    return mallctl("version", &v, &len, nullptr, 0) == 0 && v != nullptr ? v : "unknown";
  }();
  return version;
}

void TuneAllocator() {
  if (HaveJemalloc()) {
    // Its defaults already fit: freed extents are kept and handed back to the kernel over
    // seconds (dirty_decay_ms), not after every message.
    return;
  }
  // Blocks below 32 MiB come from the heap, not from a fresh mmap each time.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  // Keep up to 16 MiB of free memory at the top of a heap instead of trimming it at once (far
  // above what one message frees), and grow heaps 16 MiB at a time.
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
}

void ReleaseFreeMemory() {
  if (HaveJemalloc()) {
    // Every arena's unused pages, now (MALLCTL_ARENAS_ALL is 4096 in jemalloc 5).
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

}  // namespace spate
