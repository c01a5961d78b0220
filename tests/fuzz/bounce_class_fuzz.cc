// tests/fuzz/bounce_class_fuzz.cc
//
// Fuzzes bounce classification with the shipped rules (delivery/bounce_class.h,
// Classifier::Default()) over hostile reply text.
//
// Input: 2 octets, the reply code (big-endian, any value 0..65535), then the enhanced code
// and the text, separated by the first NUL (no NUL: all of it is the text).
//
// Invariants (a violation traps):
//  - every line gets a valid class, the same each time;
//  - the two Classify overloads agree: (code, enhanced, text) and the line "CODE ENHANCED
//    text" written out;
//  - only the first Classifier::kMaxInput octets count: the line and its prefix of that length
//    get the same class;
//  - control characters count as spaces.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "delivery/bounce_class.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate;
  using namespace spate::fuzz;
  using delivery::Classifier;
  if (size < 2)
    return 0;
  const auto code = static_cast<uint16_t>(data[0] << 8 | data[1]);
  const std::string_view rest = AsView(data + 2, size - 2);
  const size_t z = rest.find('\0');
  const std::string_view enhanced = z == std::string_view::npos ? "" : rest.substr(0, z);
  const std::string_view text = z == std::string_view::npos ? rest : rest.substr(z + 1);
  const Classifier& c = Classifier::Default();

  const delivery::BounceClass got = c.Classify(code, enhanced, text);
  FUZZ_CHECK(static_cast<size_t>(got) < delivery::kBounceClassCount);
  FUZZ_CHECK(c.Classify(code, enhanced, text) == got);
  std::string line;
  if (code != 0)
    line = std::to_string(code) + " ";
  if (!enhanced.empty())
    line.append(enhanced).append(" ");
  line.append(text);
  FUZZ_CHECK(c.Classify(line) == got);
  FUZZ_CHECK(c.Classify(std::string_view(line).substr(0, Classifier::kMaxInput)) == got);
  for (char& ch : line) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 32 || u == 127)
      ch = ' ';
  }
  FUZZ_CHECK(c.Classify(line) == got);
  return 0;
}
