// tests/fuzz/bounce_rules_fuzz.cc
//
// Fuzzes the bounce rules compiler (delivery/bounce_class.h, Classifier::FromToml) with an
// arbitrary rules document: TOML that may be malformed, name unknown classes, hold values of
// any type and expressions RE2 refuses or finds expensive.
//
// Input: the document, whole.
//
// Invariants (a violation traps):
//  - a refused document says why (a non-empty error), an accepted one has no error;
//  - compiling the same document again gives the same verdict and the same rule count;
//  - an accepted document classifies a few fixed reply lines, and the document itself as a
//    line, into a valid class, the same each time, and the same through both Classify
//    overloads.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "delivery/bounce_class.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

void CheckLine(const delivery::Classifier& c, std::string_view line) {
  const delivery::BounceClass got = c.Classify(line);
  FUZZ_CHECK(static_cast<size_t>(got) < delivery::kBounceClassCount);
  FUZZ_CHECK(c.Classify(line) == got);
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate;
  using namespace spate::fuzz;
  const std::string_view doc = AsView(data, size);
  std::string error;
  const std::optional<delivery::Classifier> c = delivery::Classifier::FromToml(doc, &error);
  FUZZ_CHECK(c.has_value() == error.empty());
  std::string again_error;
  const std::optional<delivery::Classifier> again =
      delivery::Classifier::FromToml(doc, &again_error);
  FUZZ_CHECK(again.has_value() == c.has_value());
  FUZZ_CHECK(again_error == error);
  if (!c)
    return 0;
  FUZZ_CHECK(again->rules() == c->rules());
  static constexpr std::string_view kLines[] = {
      "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
      "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
      "451 4.4.1 connect to 192.0.2.1:25: Connection refused",
      "protocol error: malformed reply",
      "",
  };
  for (std::string_view line : kLines)
    CheckLine(*c, line);
  CheckLine(*c, doc);
  FUZZ_CHECK(
      c->Classify(550, "5.1.1", "<bob@example.com>: Recipient address rejected: User unknown") ==
      c->Classify(kLines[0]));
  FUZZ_CHECK(c->Classify(0, "", doc) == c->Classify(doc));
  return 0;
}
