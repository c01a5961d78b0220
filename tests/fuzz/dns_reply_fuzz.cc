// tests/fuzz/dns_reply_fuzz.cc
//
// Fuzzes ParseReply (core/dns/message.h): a whole DNS reply from the resolver that [dns]
// trust_ad queries, compression pointers, CNAME chains and the authority's SOA included.
//
// Input: [kind] packet. Kind (first byte, mod 5): the asked type, A, MX, TXT, TLSA or AAAA;
// the asked name is always "a.test" (the seeds' question).
//
// Invariants (a violation traps):
//  - nothing is read past the input, and every pointer walk ends (ASan, the timeout);
//  - a parsed reply's id is the packet's first two octets;
//  - every record's rdata, but an MX's, is octets of the packet as they are; an MX's is its
//    preference and an exchange of at most 255 octets in wire form;
//  - a query spate builds, answered as it is with QR set, parses with no records.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/dns/message.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate::dns;
  if (size < 1)
    return 0;
  static constexpr uint16_t kTypes[] = {kRrA, kRrMx, kRrTxt, kRrTlsa, kRrAaaa};
  const uint16_t type = kTypes[data[0] % 5];
  const std::string_view packet(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (std::optional<Reply> r = ParseReply(packet, "a.test", type)) {
    FUZZ_CHECK(r->id == ((static_cast<uint8_t>(packet[0]) << 8) | static_cast<uint8_t>(packet[1])));
    for (const std::string& rdata : r->rdata) {
      if (type == kRrMx)
        FUZZ_CHECK(rdata.size() >= 3 && rdata.size() <= 2 + 255);
      else
        FUZZ_CHECK(packet.find(rdata) != std::string_view::npos);
    }
  }
  std::string query = BuildQuery(7, "a.test", type);
  query[2] = static_cast<char>(query[2] | 0x80);
  std::optional<Reply> echo = ParseReply(query, "a.test", type);
  FUZZ_CHECK(echo.has_value() && echo->rdata.empty() && echo->id == 7);
  return 0;
}
