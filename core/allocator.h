// core/allocator.h
//
// The daemon runs on jemalloc (linked in by CMakeLists.txt, SPATE_JEMALLOC; not in sanitizer
// builds): with glibc's malloc, malloc and free were a tenth of its CPU at 2 KB messages.
// These functions find out at run time which allocator the process has, so the same code
// serves both.
// On glibc, TuneAllocator() sets malloc for an MTA's allocation pattern: message bodies of tens
// of kilobytes to megabytes, allocated and freed at high rate. With the defaults, glibc
// gives such memory back to the kernel after every message (heap trim above 128 KiB, mmap for
// blocks above 128 KiB) and faults it in again for the next: measured on a 100 KB
// transaction through the server session, 945 us with the defaults and 33 us with these
// settings (bench/micro, BM_ServerTransaction/102400), the difference being page faults and
// TLB shootdowns. Memory is still returned once more than 16 MiB sits free at the top.
// On jemalloc its defaults fit as they are (freed memory goes back to the kernel over seconds).
// ReleaseFreeMemory() hands free heap memory back to the kernel (malloc_trim, or jemalloc's
// purge of every arena) after a large drop, e.g. when thousands of idle destinations were
// forgotten: otherwise RSS stays at its peak. AllocatorName(): "glibc", or jemalloc's version.
// Threading: TuneAllocator: once, first thing in main(), before any thread starts.
// ReleaseFreeMemory: any thread; it walks the heap (milliseconds on a large one): call it
// rarely.
#pragma once

namespace spate {

void TuneAllocator();
void ReleaseFreeMemory();
const char* AllocatorName();

}  // namespace spate
