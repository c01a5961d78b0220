// tests/fuzz/tlsrpt_fuzz.cc
//
// Fuzzes tlsrpt::Decode (delivery/tlsrpt.h): a TLSRPT report file read back at start, which
// may be anything a disk or an operator left there.
//
// Input: the file's text.
//
// Invariants (a violation traps):
//  - a refusal has a reason; nothing throws;
//  - what decodes encodes and decodes again to itself (Encode writes only what Decode reads);
//  - a decoded report has a domain, and at most kMaxDetails failure details per policy.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "delivery/tlsrpt.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate::delivery::tlsrpt;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  std::optional<DomainReport> r = Decode(text, &error);
  if (!r) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  FUZZ_CHECK(!r->domain.empty());
  for (const auto& [key, p] : r->policies)
    FUZZ_CHECK(p.details.size() <= kMaxDetails);
  std::string again_error;
  std::optional<DomainReport> again = Decode(Encode(*r, {"o", "c", "n"}), &again_error);
  FUZZ_CHECK(again.has_value() && *again == *r);
  return 0;
}
