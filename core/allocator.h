// core/allocator.h
//
// TuneAllocator() sets glibc malloc for an MTA's allocation pattern: message bodies of tens
// of kilobytes to megabytes, allocated and freed at high rate. With the defaults, glibc
// gives such memory back to the kernel after every message (heap trim above 128 KiB, mmap for
// blocks above 128 KiB) and faults it in again for the next: measured on a 100 KB
// transaction through the server session, 945 us with the defaults and 33 us with these
// settings (bench/micro, BM_ServerTransaction/102400), the difference being page faults and
// TLB shootdowns. Memory is still returned once more than 16 MiB sits free at the top.
// ReleaseFreeMemory() hands free heap memory back to the kernel (malloc_trim) after a large
// drop, e.g. when thousands of idle destinations were forgotten: otherwise RSS stays at its peak.
// Threading: TuneAllocator: once, first thing in main(), before any thread starts.
// ReleaseFreeMemory: any thread; it walks the heap (milliseconds on a large one): call it
// rarely.
#pragma once

namespace spate {

void TuneAllocator();
void ReleaseFreeMemory();

}  // namespace spate
