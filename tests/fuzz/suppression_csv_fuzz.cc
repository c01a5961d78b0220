// tests/fuzz/suppression_csv_fuzz.cc
//
// Fuzzes the suppression list's CSV form (queue/suppression_csv.h): what `spate suppression
// import` reads from an operator's file, which can hold anything.
//
// Input: the CSV text, whole (no header octets). "now" is a fixed instant.
//
// Invariants (a violation traps):
//  - no read past the input (ASan); a failed parse names a line within the input and yields no
//    entries;
//  - every parsed entry is what the list takes: a valid normalized address, a valid class, a
//    reason within its bound, a since the format can write;
//  - round trip: what parses, formatted again, parses to the same entries; and formatting those
//    gives the same text (one spelling per list).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "queue/suppression_csv.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

constexpr int64_t kNow = 1796143353123;  // 2026-12-01T16:42:33.123Z

void Run(std::string_view in) {
  queue::SuppressionCsv csv = queue::ParseSuppressionCsv(in, kNow);
  if (!csv.ok()) {
    FUZZ_CHECK(csv.entries.empty());
    FUZZ_CHECK(!csv.error.empty());
    size_t lines = 1;
    for (char c : in)
      lines += c == '\n' ? 1 : 0;
    FUZZ_CHECK(csv.bad_line >= 1 && csv.bad_line <= lines);
    return;
  }
  for (const queue::SuppressionEntry& e : csv.entries) {
    FUZZ_CHECK(queue::ValidSuppressionAddress(e.address));
    FUZZ_CHECK(queue::NormalizeAddress(e.address) == e.address);
    FUZZ_CHECK(queue::ValidSuppressionClass(e.klass));
    FUZZ_CHECK(e.reason.size() <= queue::kMaxSuppressionReason);
    FUZZ_CHECK(queue::ParseRfc3339(queue::FormatRfc3339(e.since_ms)) == e.since_ms);
  }
  const std::string text = queue::FormatSuppressionCsv(csv.entries);
  queue::SuppressionCsv again = queue::ParseSuppressionCsv(text, 0);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again.entries == csv.entries);
  FUZZ_CHECK(queue::FormatSuppressionCsv(again.entries) == text);
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  spate::fuzz::Run(spate::fuzz::AsView(data, size));
  return 0;
}
