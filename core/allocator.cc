#include "core/allocator.h"

#include <malloc.h>

namespace spate {

void TuneAllocator() {
  // Blocks below 32 MiB come from the heap, not from a fresh mmap each time.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  // Keep up to 16 MiB of free memory at the top of a heap instead of trimming it at once (far
  // above what one message frees), and grow heaps 16 MiB at a time.
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
}

void ReleaseFreeMemory() {
  malloc_trim(0);
}

}  // namespace spate
