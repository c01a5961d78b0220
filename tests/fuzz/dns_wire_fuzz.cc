// tests/fuzz/dns_wire_fuzz.cc
//
// Fuzzes the DNS rdata parsers (core/dns/wire.h): what a DNS answer, from anyone on the
// network, makes of MX routing's inputs.
//
// Input: [kind] rdata. Kind (first byte, mod 3): 0 MX, 1 A, 2 AAAA.
//
// Invariants (a violation traps):
//  - no parser reads past its input (ASan);
//  - an MX that parses names a host of letters, digits, '-', '_' and dots, lower case, no
//    empty label, at most 253 octets, and written back in wire form it is the input exactly;
//  - A and AAAA parse exactly their 4 and 16 octets.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "core/dns/wire.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

std::string ToWire(const dns::MxRecord& mx) {
  std::string out;
  out.push_back(static_cast<char>(mx.preference >> 8));
  out.push_back(static_cast<char>(mx.preference & 0xff));
  std::string_view host = mx.host;
  while (!host.empty()) {
    const size_t dot = host.find('.');
    const std::string_view label = host.substr(0, dot);
    out.push_back(static_cast<char>(label.size()));
    out.append(label);
    host = dot == std::string_view::npos ? std::string_view() : host.substr(dot + 1);
  }
  out.push_back('\0');
  return out;
}

void Mx(std::string_view in) {
  std::optional<dns::MxRecord> mx = dns::ParseMx(in);
  if (!mx)
    return;
  FUZZ_CHECK(mx->host.size() <= 253);
  FUZZ_CHECK(mx->host.empty() || (mx->host.front() != '.' && mx->host.back() != '.'));
  FUZZ_CHECK(mx->host.find("..") == std::string::npos);
  for (char c : mx->host)
    FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
               c == '.');
  // Lower-casing is the only change: the input, lower-cased, is what it writes back.
  std::string lowered(in);
  for (size_t i = 2; i < lowered.size(); ++i) {
    if (lowered[i] >= 'A' && lowered[i] <= 'Z')
      lowered[i] = static_cast<char>(lowered[i] - 'A' + 'a');
  }
  FUZZ_CHECK(ToWire(*mx) == lowered);
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      spate::fuzz::Mx(in);
      break;
    case 1:
      FUZZ_CHECK(spate::dns::ParseA(in).has_value() == (in.size() == 4));
      break;
    case 2:
      FUZZ_CHECK(spate::dns::ParseAaaa(in).has_value() == (in.size() == 16));
      break;
    case 3:
      if (std::optional<std::string> t = spate::dns::ParseTxt(in))
        FUZZ_CHECK(t->size() < in.size() || in.empty());
      break;
  }
  return 0;
}
