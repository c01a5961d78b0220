// tests/unit/allocator_test.cc
//
// core/allocator.h on the allocator the daemon has (this binary links jemalloc as the daemon
// does, or nothing in the sanitizer builds): it says which one it is, and ReleaseFreeMemory()
// gives freed memory back to the kernel, as the daemon relies on after forgetting thousands of
// idle destinations.
#include "core/allocator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

namespace spate {
namespace {

// Resident memory of this process, from /proc/self/statm.
size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr)
    return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

TEST(AllocatorTest, SaysWhichAllocatorItIs) {
  const std::string name = AllocatorName();
#if defined(SPATE_TEST_JEMALLOC)
  // jemalloc's version string: "5.3.0-0-g..." on Debian 12.
  EXPECT_TRUE(name.size() > 2 && name[0] >= '1' && name[0] <= '9' && name[1] == '.') << name;
#else
  EXPECT_EQ(name, "glibc");
#endif
}

TEST(AllocatorTest, FreedMemoryGoesBackToTheKernelOnRelease) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizers' allocators hold freed memory back on purpose (ASan's quarantine keeps up
  // to 256 MB): what this checks is the daemon's allocator, which those builds do not have.
  GTEST_SKIP() << "a sanitizer's allocator";
#endif
  TuneAllocator();
  ReleaseFreeMemory();
  const size_t before = ResidentBytes();
  ASSERT_GT(before, 0u);
  // 256 MB in blocks of the size of large message bodies, every page touched, then freed.
  constexpr size_t kBlock = 1 << 20;
  constexpr size_t kBlocks = 256;
  std::vector<char*> blocks;
  for (size_t i = 0; i < kBlocks; ++i) {
    char* p = static_cast<char*>(std::malloc(kBlock));
    ASSERT_NE(p, nullptr);
    std::memset(p, static_cast<int>(i), kBlock);
    blocks.push_back(p);
  }
  const size_t peak = ResidentBytes();
  EXPECT_GE(peak, before + kBlocks * kBlock * 9 / 10);
  for (char* p : blocks)
    std::free(p);
  ReleaseFreeMemory();
  const size_t after = ResidentBytes();
  // Nearly all of it gone again (either allocator may keep a few MB of it for reuse).
  EXPECT_LT(after, before + 32u * kBlock) << "before " << before << " peak " << peak;
}

}  // namespace
}  // namespace spate
